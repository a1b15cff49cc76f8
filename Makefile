# The kit's commands. Quick start: `make demo`, `make test` (see README.md).
SHELL := /bin/bash
PY_SYS ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and kept out of the hashed lock: the CPU build on
# laptops/CI; on a GPU host pre-install your CUDA torch into the venv (or set
# TORCH_SPEC) and it is kept.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

PRESET ?= smoke
GPUS ?= 1
RUN ?=
DATA ?= data/arc2concept-aug-1000
CKPT ?=
OUT ?=
PROFILE ?= kaggle-2026
# the default competition slug lives in trm/competition.py only (one place for Python and make)
COMP ?= $(shell sed -n 's/^COMPETITION = "\([^"]*\)"$$/\1/p' trm/competition.py)
VERSION ?=
ACCELERATOR ?=
IMAGE_PINNING ?=
WAIT ?=
WAIT_HOURS ?=
REPO ?=
OVERRIDES ?=
DRY_RUN ?=
PUBLIC ?=
FORCE ?=
LICENSE ?=
# pytest-xdist workers for `make test` / `make test-fast`: CI has 2 cores and most tests use one
TEST_WORKERS ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: help install demo test test-fast lint lock data data-kaggle train evaluate bench gpu-prep \
        kaggle-wheels kaggle-wheels-check kaggle-image-envs kaggle-datasets hf-publish kaggle-kernel kaggle-submit \
        kaggle-sim clean

help:
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	@# setuptools warns on every editable install that same-named folders may shadow the package: the kit's are the package
	PYTHONWARNINGS="ignore:Editable installation:UserWarning" $(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the kit from the lock

demo: $(STAMP) ## the main job on the bundled ARC-AGI-2 data (CPU, minutes)
	$(PY) -m trmkit.demo

test: $(STAMP) ## the whole test suite (what CI runs), on TEST_WORKERS processes
	$(PY) -m pytest -q -n $(TEST_WORKERS)

test-fast: $(STAMP) ## everything but the slow tier (learning test, torchrun, papermill, kaggle sim)
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow and not cuda"

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .

lock: $(STAMP) ## regenerate requirements.lock from requirements.in
	$(VENV)/bin/pip-compile --quiet --generate-hashes --no-emit-index-url --no-emit-find-links \
	  --allow-unsafe --unsafe-package torch -o requirements.lock requirements.in

data: $(STAMP) ## upstream's bundled ARC JSON (kaggle/combined at e7b6871) into data/raw/
	$(PY) -m trmkit.fetch upstream --out data/raw

data-kaggle: $(STAMP) ## competition files via the kaggle CLI (needs credentials)
	$(PY) -m trmkit.fetch kaggle --competition $(COMP) --out data/kaggle/$(COMP)

train: $(STAMP) ## papermill the training notebook: make train PRESET=paper-arc2 GPUS=8 [RUN=name] [OVERRIDES="--resume runs/name"] (no RUN: a new unique name)
	$(PY) -m trmkit.notebooks train --preset $(PRESET) --gpus $(GPUS) $(if $(RUN),--run $(RUN)) --data $(DATA) $(OVERRIDES)

evaluate: $(STAMP) ## papermill the evaluation notebook: make evaluate CKPT=runs/x/checkpoints/step_N
	$(PY) -m trmkit.notebooks evaluate --checkpoint $(CKPT) --data $(DATA) $(if $(OUT),--out $(OUT))

bench: $(STAMP) ## CPU benchmarks (print figures)
	$(PY) bench/model_step.py
	$(PY) bench/evaluate.py

# The GPU session (bench/gpu_session.sh) runs where nothing can be downloaded: its inputs are fetched here
# into .gpu/ (ignored; the device call carries it). The runner's versions are the lock's.
# GPU_COMP: the competition files (default: the Kaggle simulation's)
GPU_COMP ?= $(shell $(PY) -c 'from trmkit.sim import DEFAULT_COMP_DIR as d; print(d)')
RUNNER := papermill ipykernel nbclient nbconvert
gpu-prep: $(STAMP) ## .gpu/: notebook-runner wheels for the GPU machine's Python + competition files
	$(PY) -m trmkit.wheelhouse --profile gpu-h200 --out .gpu/wheels \
	  $(foreach p,$(RUNNER),--extra $(shell sed -n 's/^\($(p)==[^ ]*\).*/\1/p' requirements.lock))
	rm -rf .gpu/comp && cp -r $(GPU_COMP) .gpu/comp && chmod -R u+w .gpu/comp

kaggle-wheels: $(STAMP) ## offline wheelhouse for a Kaggle image profile (PROFILE=kaggle-2026)
	$(PY) -m trmkit.wheelhouse --profile $(PROFILE)

kaggle-wheels-check: $(STAMP) ## offline install + import + forward pass from the wheelhouse, on the image's Python
	$(PY) -m trmkit.wheelcheck --profile $(PROFILE)

# Stand-ins for the images whose Python is not the venv's: that Python (pyenv or PATH) with the image's
# torch (CUDA build, runs on CPU), numpy and tqdm, under build/image-envs/ (~5-7 GB each, downloaded once).
IMAGE_ENV_PROFILES ?= kaggle-2026 kaggle-2026-next colab-2026-py313
kaggle-image-envs: $(STAMP) ## make the image stand-in envs the wheel checks and tests use (network, GBs)
	@for p in $(IMAGE_ENV_PROFILES); do $(PY) -m trmkit.wheelcheck --profile $$p --setup || exit 1; done

kaggle-datasets: $(STAMP) ## stage (and push, with credentials) the wheels / repo / weights bundles
	$(PY) -m trmkit.bundles push --profile $(PROFILE) $(if $(CKPT),--checkpoint $(CKPT)) $(if $(DRY_RUN),--dry-run) $(if $(FORCE),--force) $(if $(LICENSE),--license $(LICENSE))

hf-publish: $(STAMP) ## upload the weights bundle to Hugging Face: make hf-publish REPO=owner/name
	$(PY) -m trmkit.bundles hf-publish --repo $(REPO) $(if $(CKPT),--checkpoint $(CKPT)) $(if $(PUBLIC),--public) $(if $(LICENSE),--license $(LICENSE))

kaggle-kernel: $(STAMP) ## push the competition notebook as a Kaggle kernel (ACCELERATOR=NvidiaTeslaT4 for T4x2; DRY_RUN=1 stages only)
	$(PY) -m trmkit.kernel push --competition $(COMP) $(if $(ACCELERATOR),--accelerator $(ACCELERATOR)) $(if $(IMAGE_PINNING),--image-pinning $(IMAGE_PINNING)) $(if $(DRY_RUN),--dry-run)

kaggle-submit: $(STAMP) ## submit a kernel version: make kaggle-submit VERSION=n [WAIT=1: wait for the score, WAIT_HOURS=24 at most]
	$(PY) -m trmkit.kernel submit --competition $(COMP) $(if $(VERSION),--version $(VERSION)) $(if $(WAIT),--wait $(if $(WAIT_HOURS),--wait-hours $(WAIT_HOURS)))

kaggle-sim: $(STAMP) ## run the staged competition kernel (the bytes kaggle-datasets would push) offline in a local Kaggle-like root (COMP_DIR=, CKPT=, ACCELERATOR=, PROFILE=, COMP=)
	$(PY) -m trmkit.sim --profile $(PROFILE) --competition $(COMP) $(if $(COMP_DIR),--comp-dir $(COMP_DIR) --variants as-given) $(if $(CKPT),--checkpoint $(CKPT)) $(if $(ACCELERATOR),--accelerator $(ACCELERATOR))

clean:
	rm -rf build runs/demo .pytest_cache
