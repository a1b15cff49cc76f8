"""The manual cannot drift from the code: every command in a fenced block of README.md, docs/*.md and
wheels/README.md parses with what would run it, what a command quoted in prose names exists, every
kit path it names exists and every link resolves (tests/docs_check.py); a break planted in a copy
of a doc is reported."""

from __future__ import annotations

import docs_check as dc
import pytest


@pytest.mark.parametrize("doc", dc.DOCS)
def test_every_documented_command_path_and_link_is_right(doc):
    assert dc.check_doc((dc.ROOT / doc).read_text(), doc) == []


def test_the_check_reads_every_kind_of_command():
    """The real docs hold each kind the check knows, so none of its branches is idle."""
    kinds = set()
    for doc in dc.DOCS:
        for lang, line, body in dc.code_blocks((dc.ROOT / doc).read_text()):
            if lang in dc.SHELL_LANGS:
                kinds |= {argv[0] for _, argv in dc.commands(body, line)}
    assert {"make", "torchrun", "papermill", "bash", "python", ".venv/bin/python"} <= kinds


# (doc, text replaced, planted text, what the report names)
PLANTED = [
    ("docs/training.md", "--input-file-prefix data/raw", "--input-prefix data/raw", "--input-prefix"),
    ("docs/training.md", "1gpu --grad-accum-steps 8", "1gpu --grad-acum-steps 8", "grad_acum_steps"),
    ("docs/training.md", 'OVERRIDES="--grad_accum_steps 8"', 'OVERRIDES="--grad_acum_steps 8"',
     "grad_acum_steps"),
    ("docs/training.md", "make train PRESET=smoke ", "make train PRESETS=smoke ", "PRESETS="),
    ("docs/training.md", "make data-kaggle", "make data-kagle", "no such target"),
    ("docs/training.md", "-p n_gpus 8 -p run_name arc2 -p data_path data/arc2concept-aug-1000\n",
     "-p n_gpu 8 -p run_name arc2 -p data_path data/arc2concept-aug-1000\n", "n_gpu is not a parameter"),
    ("docs/training.md", '-y "overrides: [--resume, runs/arc2]"', '-p overrides "--resume runs/arc2"',
     "-p overrides gives a str"),
    ("docs/training.md", "torchrun --nnodes 2", "torchrun --nodes-count 2", "--nodes-count"),
    ("docs/evaluation.md", "python -m trm.submission validate", "python -m trm.submission check",
     "invalid choice"),
    ("docs/evaluation.md", "-m trm.evaluate --checkpoint runs", "-m trm.evalute --checkpoint runs",
     "no such module"),
    ("docs/performance.md", "bash bench/gpu_session.sh --dry-run", "bash bench/gpu_session.sh --dryrun",
     "--dryrun"),
    ("docs/performance.md", "ONLY=notebook,ttt bash", "ONLY_PARTS=notebook,ttt bash", "ONLY_PARTS="),
    ("docs/performance.md", "`bench/gpu_notebook.py`", "`bench/gpu_notebooks.py`", "bench/gpu_notebooks.py"),
    ("docs/kaggle.md", "kaggle-kernel ACCELERATOR=", "kaggle-kernel ACCELERATORS=", "ACCELERATORS="),
    # commands quoted in prose: what they name
    ("docs/performance.md", "(`--compile_step true`)", "(`python -m trm.train --compile_stepz true`)",
     "no option --compile_stepz"),
    ("docs/evaluation.md", "`make kaggle-sim CKPT=`", "`make kaggle-sim CKPTZ=`", "CKPTZ"),
    ("docs/evaluation.md", "`--early-exit` (off", "`python -m trm.evaluate --early-exitt` (off",
     "--early-exitt"),
    ("README.md", "(docs/kaggle.md#runbook-from-zero-to-a-scored-submission)", "(docs/kaggle.md#runbook)",
     "#runbook"),
    ("README.md", "[docs/testing.md](docs/testing.md)", "[docs/testing.md](docs/tests.md)", "docs/tests.md"),
]


@pytest.mark.parametrize("doc,old,new,named", PLANTED, ids=[p[3] for p in PLANTED])
def test_a_planted_break_is_reported(doc, old, new, named):
    text = (dc.ROOT / doc).read_text()
    assert text.count(old) >= 1, f"{doc} no longer holds {old!r}: plant the break elsewhere"
    problems = dc.check_doc(text.replace(old, new, 1), doc)
    assert len(problems) == 1 and named in problems[0], problems
    assert problems[0].startswith(f"{doc}:")  # names the doc and its line


def test_github_heading_slugs():
    assert dc.slug("Datasets: `python -m dataset_builder`") == "datasets-python--m-dataset_builder"
    assert dc.slug("GPU: measured on an H200 (2026-11-27)") == "gpu-measured-on-an-h200-2026-11-27"
    assert dc.anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_make_expansion_follows_the_recipe():
    values = {"PY": "$(VENV)/bin/python", "VENV": ".venv", "RUN": "x", "OUT": ""}
    assert dc.expand("$(PY) -m m $(if $(RUN),--run $(RUN)) $(if $(OUT),--out $(OUT),--no-out) $$HOME",
                     values) == ".venv/bin/python -m m --run x --no-out $HOME"
