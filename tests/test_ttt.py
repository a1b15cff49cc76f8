"""Test-time training and the competition notebook's logic (trm.ttt), plus the notebook's files.

    .venv/bin/pytest -q tests/test_ttt.py

Hermetic: inline toy tasks and a tiny untrained TRM stand in for the competition data and the
pretrained weights. The full offline notebook run is tests/test_kaggle_sim.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import torch

from trm import finetune, ttt, ttt_params
from trm import kaggle_input as kin
from trm.submission import validate_submission

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "kaggle" / "trm_arc2_inference_notebook.py"

# Two toy tasks: "recolour 1 -> 2" and "flip left-right"; the second has two test inputs.
TASKS = {
    "aaaa0001": {"train": [{"input": [[1, 0], [0, 1]], "output": [[2, 0], [0, 2]]},
                           {"input": [[0, 1, 1]], "output": [[0, 2, 2]]}],
                 "test": [{"input": [[1, 1], [0, 0]]}]},
    "bbbb0002": {"train": [{"input": [[1, 2, 3]], "output": [[3, 2, 1]]},
                           {"input": [[4, 0], [5, 6]], "output": [[0, 4], [6, 5]]}],
                 "test": [{"input": [[7, 8]]}, {"input": [[1], [2]]}]},
}
TINY = dict(hidden_size=16, num_heads=1, expansion=2.0, n_layers=1, n_outer_cycles=1, n_latent_steps=1,
            halt_max_steps=2, puzzle_emb_ndim=16, puzzle_emb_len=1, forward_dtype="float32")


def write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


# --------------------------------------------------------------------------- notebook files

def _cells(path: Path):
    import jupytext

    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in jupytext.read(path).cells]


def _cell_values() -> dict:
    import ast

    cells = [c for c in _cells(NOTEBOOK) if "parameters" in c[2]]
    assert len(cells) == 1
    values = {}
    for node in ast.parse(cells[0][1]).body:
        assert isinstance(node, ast.Assign), ast.dump(node)
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def test_parameters_cell_matches_ttt_params():
    """One `parameters` cell of literals: every TTTParams field but the test hooks, each with the
    field's own default (None for what the named settings fill): one declaration per parameter."""
    values = _cell_values()
    fields = {f.name: f.default for f in dataclasses.fields(ttt_params.TTTParams)}
    assert set(values) == set(fields) - set(ttt_params.HOOKS)
    assert values == {k: fields[k] for k in values}
    assert all(values[k] is None for k in ttt_params.FINETUNE)  # the defaults live in SETTINGS only
    assert ttt.TTTParams.from_namespace({**values, "mine": 1}, ignore={"mine"}) == ttt.TTTParams().resolved()


@pytest.mark.parametrize("name", ["default", "nvarc", "smoke"])
def test_a_written_value_always_wins_over_a_named_setting(name):
    """Even a value equal to the default: the notebook can tell a written value from None."""
    base = ttt_params.SETTINGS["default"]
    named = ttt.TTTParams.from_namespace({"settings": name})
    for k in ttt_params.FINETUNE:  # unwritten: the setting's value, else the default's
        assert getattr(named, k) == ttt_params.SETTINGS[name].get(k, base[k]), k
    smoke_lr = ttt_params.SETTINGS["smoke"]["lr"]
    for lr in (base["lr"], smoke_lr, 3e-4):
        assert ttt.TTTParams.from_namespace({"settings": name, "lr": lr}).lr == lr
    mine = ttt.TTTParams.from_namespace({"settings": name, "global_batch_size": 256, "halt_max_steps": 7})
    assert (mine.global_batch_size, mine.halt_max_steps) == (256, 7)


def test_named_settings():
    nvarc = ttt.TTTParams.from_namespace({"settings": "nvarc"})
    assert (nvarc.n_outer_cycles, nvarc.n_latent_steps, nvarc.halt_max_steps) == (4, 4, 10)
    assert (nvarc.global_batch_size, nvarc.max_epochs, nvarc.lr_warmup_steps) == (128, 4000, 200)
    assert nvarc.finetune_epochs is None and nvarc.epoch_limit == 4000  # clock-fitted, capped at NVARC's best
    default = ttt.TTTParams.from_namespace({})
    assert (default.halt_max_steps, default.n_outer_cycles) == (None, None)  # as pretrained
    with pytest.raises(ValueError, match="nvarc"):
        ttt.TTTParams.from_namespace({"settings": "nvrac"})


@pytest.mark.parametrize("name, value, says", [
    ("finetune_epochs", 0, "must be a positive number; write None for a length fitted to the clock"),
    ("max_epochs", 0, "must be a positive number; write None for the named settings' value"),
    ("max_steps", 0, "write None for no step limit"), ("n_gpus", 0, "write None for every visible GPU"),
    ("halt_max_steps", -1, "else as pretrained"), ("check_minutes", 0, "write None for the full budget"),
    ("num_aug", True, "must be a whole number (int) or None, not a bool"),
    ("mode", "fast", "choose auto, submit or validate"),
])
def test_no_number_stands_for_another(name, value, says):
    """0 never silently means "as pretrained", "every GPU" or "deadline only": None does."""
    with pytest.raises(ValueError, match=re.escape(f"{name} = {value!r}")) as e:
        ttt.TTTParams.from_namespace({name: value})
    assert says in str(e.value)


def test_first_code_cell_runs_with_the_standard_library_only(tmp_path):
    """The first code cell writes a valid fallback before any install: run it with `python -S -I`
    (no site-packages), the kit taken from a repo folder, then from the kit's wheel alone."""
    first = next(src for kind, src, _ in _cells(NOTEBOOK) if kind == "code")
    assert "ttt.start(" in first
    for layout in ("repo", "wheel"):
        root = tmp_path / layout
        write(root / "input" / "competitions" / "arc-prize-2025" / "arc-agi_test_challenges.json", TASKS)
        if layout == "repo":
            (root / "input" / "datasets" / "me" / "kit-repo").mkdir(parents=True)
            (root / "input" / "datasets" / "me" / "kit-repo" / "trm").symlink_to(REPO / "trm")
        else:  # a pure-Python wheel is a zip with the package at its root
            wheel = root / "input" / "kit-wheels" / "trm_kaggle_kit-0.1.0-py3-none-any.whl"
            wheel.parent.mkdir(parents=True)
            with zipfile.ZipFile(wheel, "w") as z:
                for f in (REPO / "trm").glob("*.py"):
                    z.write(f, f"trm/{f.name}")
        env = {"TRM_KAGGLE_INPUT": str(root / "input"), "TRM_KAGGLE_WORKING": str(root / "working"),
               "PATH": "/usr/bin:/bin"}
        r = subprocess.run([sys.executable, "-S", "-I", "-c", first], env=env, capture_output=True, text=True,
                           cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        sub = json.loads((root / "working" / "submission.json").read_text())
        assert validate_submission(sub, TASKS) == []


def test_kernel_metadata_template():
    """kaggle/kernel-metadata.json as the push renders it (trmkit.kernel.render_kernel): it names the
    notebook that is there, one papermill can start (kernelspec and language), a GPU machine the
    kit accepts, internet off, the competition and the kit's three datasets as sources, and every
    placeholder filled; the template itself already says what the push would force."""
    from types import SimpleNamespace

    from trm.competition import COMPETITION
    from trmkit import kernel
    from trmkit.bundles import BUNDLES, PLACEHOLDER
    from trmkit.notebooks import kernel_problems

    template = json.loads(kernel.TEMPLATE.read_text())
    notebook = kernel.TEMPLATE.parent / template["code_file"]
    assert notebook.is_file() and notebook == kernel.NOTEBOOK
    assert kernel_problems(json.loads(notebook.read_text())) == []
    assert kernel.check_shape(template["machine_shape"]) == template["machine_shape"]
    a = SimpleNamespace(template=kernel.TEMPLATE, kernel_slug=None, slug_prefix="kit",
                        competition=COMPETITION, notebook=notebook, no_weights=False, accelerator=None,
                        image_pinning=None)
    meta = kernel.render_kernel(a, "me")
    assert not PLACEHOLDER.search(json.dumps(meta))  # every placeholder filled
    assert meta["competition_sources"] == [COMPETITION]
    assert sorted(meta["dataset_sources"]) == sorted(f"me/kit-{b}" for b in BUNDLES)
    assert (meta["enable_internet"], meta["enable_gpu"], meta["kernel_type"]) == (False, True, "notebook")
    forced = ("code_file", "enable_internet", "enable_gpu", "machine_shape", "docker_image_pinning_type")
    assert {k: template[k] for k in forced} == {k: meta[k] for k in forced}


# --------------------------------------------------------------------------- discovery

def _comp(d: Path, test=TASKS, extra=True) -> Path:
    write(d / kin.TEST_CHALLENGES, test)
    if extra:
        write(d / kin.EVAL_CHALLENGES, {})
    return d


@pytest.mark.parametrize("layout", ["competitions/arc-prize-2025", "arc-prize-2025"])
def test_find_competition_dir_layouts(tmp_path, layout):
    comp = _comp(tmp_path / layout)
    _comp(tmp_path / "datasets" / "me" / "repo" / "tests" / "fixture", extra=False)  # a stray copy
    assert kin.find_competition_dir(tmp_path) == comp


def test_find_competition_dir_missing(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(FileNotFoundError, match="arc-agi_test_challenges.json"):
        kin.find_competition_dir(tmp_path)


def _weights_files(d: Path) -> None:
    d.mkdir(parents=True)
    (d / "meta.json").write_text("{}")
    with zipfile.ZipFile(d / "model.pt", "w") as z:  # torch files are zips: a tar holding one
        z.writestr("archive/data.pkl", b"x")  # looks like a zip to zipfile.is_zipfile


def test_find_bundle_folder_zip_and_tar(tmp_path):
    _weights_files(tmp_path / "src" / "weights")
    # 1. an extracted folder, 2026 layout
    shutil.copytree(tmp_path / "src" / "weights", tmp_path / "a" / "datasets" / "me" / "w")
    assert (kin.find_bundle(tmp_path / "a", "weights", tmp_path / "u")
            == tmp_path / "a" / "datasets" / "me" / "w")
    # 2. a .tar Kaggle did not extract
    (tmp_path / "b" / "w").mkdir(parents=True)
    with tarfile.open(tmp_path / "b" / "w" / "weights.tar", "w") as t:
        t.add(tmp_path / "src" / "weights", arcname="weights")
    found = kin.find_bundle(tmp_path / "b", "weights", tmp_path / "u")
    assert found is not None and (found / "model.pt").is_file() and (found / "meta.json").is_file()
    # 3. a .zip, next to unrelated zips (the CLI's per-folder zips of the repo bundle)
    (tmp_path / "c" / "w").mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "c" / "w" / "trm.zip", "w") as z:
        z.writestr("ttt.py", "")
    with zipfile.ZipFile(tmp_path / "c" / "w" / "bundle.zip", "w") as z:
        for f in (tmp_path / "src" / "weights").iterdir():
            z.write(f, f"x/{f.name}")
    found = kin.find_bundle(tmp_path / "c", "weights", tmp_path / "u")
    assert found is not None and found.name == "x"
    assert kin.find_bundle(tmp_path / "c", "wheels", tmp_path / "u") is None


HIDDEN = {f"hid{i:05d}": TASKS["bbbb0002"] for i in range(20)}  # 20 tasks no attached file has solutions for


def _start(tmp_path, name: str, test: dict, rerun: str | None, monkeypatch) -> ttt.Context:
    """start() on a competition folder whose solutions files know TASKS (the placeholder) only."""
    comp = _comp(tmp_path / name / "input" / "comp", test=test)
    write(comp / "arc-agi_training_solutions.json", {"aaaa0001": [[[2]]]})
    write(comp / "arc-agi_evaluation_solutions.json", {"bbbb0002": [[[1]], [[1]]]})
    if rerun is None:
        monkeypatch.delenv(ttt.RERUN_ENV, raising=False)
    else:
        monkeypatch.setenv(ttt.RERUN_ENV, rerun)
    return ttt.start(str(tmp_path / name / "input"), str(tmp_path / name / "working"))


@pytest.mark.parametrize("rerun", [None, "", "1", "True"], ids=["unset", "empty", "1", "True"])
def test_hidden_tasks_get_every_task_and_the_full_budget_with_or_without_the_variable(tmp_path, monkeypatch,
                                                                                      rerun):
    """Kaggle documents neither the rerun variable's presence nor its value: the budget is decided
    from the data. Hidden ids -> submit, every task, budget_hours less the safety margin."""
    ctx = _start(tmp_path, "hidden", HIDDEN, rerun, monkeypatch)
    p = ttt.TTTParams(budget_hours=12.0, safety_minutes=30.0, check_minutes=20.0, check_tasks=8)
    assert not ctx.placeholder and ctx.rerun_var == rerun
    assert ttt.resolve_mode(ctx, p) == ttt.resolve_mode(ctx, ttt.TTTParams(mode="validate")) == "submit"
    assert ctx.budget(p)[0] == "full" and ctx.deadline(p) - ctx.t0 == pytest.approx(12 * 3600 - 30 * 60)
    challenges, solutions, full, out = ttt._tasks(ctx, p, "submit", HIDDEN)
    assert list(challenges) == list(full) == list(HIDDEN) and solutions is None  # all 20, not check_tasks
    assert out == ctx.working_dir / "submission.json"
    report = ttt._budget(ctx, p, ctx.deadline(p))
    assert (report["kind"] == "full" and report["test_ids_known"] is False
            and report["rerun_variable"] == rerun)
    assert report["seconds"] == pytest.approx(12 * 3600 - 30 * 60, abs=0.2)


def test_placeholder_gets_the_short_check_unless_the_variable_lengthens_it(tmp_path, monkeypatch):
    p = ttt.TTTParams(budget_hours=12.0, safety_minutes=30.0, check_minutes=20.0, check_tasks=1)
    commit = _start(tmp_path, "commit", TASKS, None, monkeypatch)
    assert commit.placeholder and ttt.resolve_mode(commit, p) == "validate"
    assert ttt.resolve_mode(commit, ttt.TTTParams(mode="submit")) == "submit"  # asked for on the placeholder
    assert commit.budget(p)[0] == "short check" and commit.deadline(p) - commit.t0 == pytest.approx(20 * 60)
    assert len(ttt._tasks(commit, p, "submit", TASKS)[0]) == 1  # check_tasks
    full = ttt.TTTParams(check_minutes=None)
    assert (commit.budget(full)[0] == "full"
            and commit.deadline(full) - commit.t0 == pytest.approx(11.5 * 3600))
    rerun = _start(tmp_path, "rerun", TASKS, "1", monkeypatch)  # the variable only ever lengthens
    assert rerun.placeholder and ttt.resolve_mode(rerun, ttt.TTTParams(mode="validate")) == "submit"
    kind, why = rerun.budget(p)
    assert (kind == "full" and ttt.RERUN_ENV in why
            and rerun.deadline(p) - rerun.t0 == pytest.approx(11.5 * 3600))
    assert len(ttt._tasks(rerun, p, "submit", TASKS)[0]) == len(TASKS)
    report = ttt._budget(rerun, p, rerun.deadline(p))
    assert (report["test_ids_known"], report["rerun_variable"]) == (True, "1")
    with pytest.raises(ValueError):
        ttt.resolve_mode(commit, ttt.TTTParams(mode="bogus"))


def test_start_writes_the_fallback(tmp_path, monkeypatch):
    _comp(tmp_path / "input" / "arc-prize-2025")
    monkeypatch.setenv("TRM_KAGGLE_INPUT", str(tmp_path / "input"))
    monkeypatch.setenv("TRM_KAGGLE_WORKING", str(tmp_path / "working"))
    ctx = ttt.start()
    assert ctx.comp_dir == tmp_path / "input" / "arc-prize-2025" and abs(ctx.t0 - time.time()) < 60
    sub = json.loads((tmp_path / "working" / "submission.json").read_text())
    assert validate_submission(sub, TASKS) == []
    assert all(e["attempt_1"] != e["attempt_2"] for v in sub.values() for e in v)
    assert ctx.deadline(ttt.TTTParams(budget_hours=1, safety_minutes=10,
                                      check_minutes=None)) == pytest.approx(ctx.t0 + 3000)


def test_finalize_merges_with_the_fallback(tmp_path):
    good = [{"attempt_1": [[2, 2], [0, 0]], "attempt_2": [[1, 1], [0, 0]]}]
    predicted = {"aaaa0001": good, "bbbb0002": [{"attempt_1": [], "attempt_2": [[1]]}] * 2}  # an empty grid
    out = ttt.finalize(predicted, TASKS, tmp_path / "submission.json", {"aaaa0001": [[[2, 2], [0, 0]]]})
    sub = json.loads((tmp_path / "submission.json").read_text())
    assert validate_submission(sub, TASKS) == []
    assert sub["aaaa0001"] == good and out["tasks_from_model"] == 1 and out["tasks_fallback"] == 1
    assert out["score"]["score"] == 1.0


# --------------------------------------------------------------------------- fine-tune worker

@pytest.fixture(scope="module")
def ttt_setup(tmp_path_factory):
    """A TTT dataset from the toy tasks and a slim checkpoint of a tiny (untrained) TRM."""
    from trm.checkpoint import export_slim, save_checkpoint
    from trm.model import TRM, ModelConfig

    d = tmp_path_factory.mktemp("ttt")
    write(d / "challenges.json", TASKS)
    # the builder's CLI
    built = ttt.build_ttt_dataset(d / "challenges.json", d / "data", num_aug=2, repo=REPO)
    assert built["splits"]["train"]["groups"] == 2 and built["splits"]["test"]["examples"] == 3 * 3
    torch.manual_seed(0)
    model = TRM(ModelConfig(**TINY, num_puzzle_identifiers=5))
    with torch.no_grad():
        model.puzzle_emb.weights.normal_()
    save_checkpoint(d / "full", model, meta={"step": 1})
    export_slim(d / "full", d / "slim")
    return d, model


def _spec(d: Path, out: str, deadline: float | None = None, **params) -> dict:
    p = {"device": "cpu", "global_batch_size": 4, "lr_warmup_steps": 1, "log_interval": 1, **params}
    return {"data": str(d / "data"), "weights": str(d / "slim"), "out": str(d / out),
            "deadline": deadline or time.time() + 600, "params": p}


def _state(path: Path) -> dict:
    return torch.load(path / "model.pt", map_location="cpu", weights_only=True)


@pytest.fixture
def sampled_ids(monkeypatch):
    """The puzzle ids of each batch the sampler hands out, in order."""
    from trm.data import TrainSampler

    seen: list[set[int]] = []
    original = TrainSampler.iter_iteration

    def spy(self, position):
        for gbatch, pos in original(self, position):
            seen.append(set(gbatch.puzzle_identifiers.tolist()))
            yield gbatch, pos

    monkeypatch.setattr(TrainSampler, "iter_iteration", spy)
    return seen


def assert_moved_rows(table, mean, sampled: list[set[int]]) -> None:
    """SignSGD moves only rows that were in a batch (no decay elsewhere), and every row of the
    first batch (all carries start halted, so step 1 trains on every row it is given). Later
    batches only fill rows whose ACT carry halted, so some of their ids may stay untouched."""
    moved = {i + 1 for i in ((table[1:] - mean).abs().amax(1) > 0).nonzero().flatten().tolist()}
    assert sampled[0] <= moved <= set().union(*sampled), (sampled, moved)


def test_finetune_mean_init_trains_and_saves(ttt_setup, sampled_ids):
    d, model = ttt_setup
    finetune.finetune(_spec(d, "ft", max_steps=3, ema=False))
    res = json.loads((d / "ft" / "ttt_finetune.json").read_text())
    assert res["steps"] == 3 and res["stopped_by"] == "steps: max_steps = 3" and res["mean_init"] is True
    assert res["num_puzzle_identifiers"] == 7  # blank + 2 tasks x (original + 2 augmentations)
    sd, before = _state(d / "ft"), model.state_dict()
    mean = before["puzzle_emb.weights"][1:].mean(0)
    table = sd["puzzle_emb.weights"]
    assert torch.all(table[0] == 0)
    assert_moved_rows(table, mean, sampled_ids)
    assert not torch.equal(sd["lm_head.weight"], before["lm_head.weight"])  # full fine-tune
    # the saved checkpoint is what trm.evaluate loads: same dataset fingerprint, strict table
    from trm.checkpoint import load_checkpoint

    loaded, meta = load_checkpoint(d / "ft", dataset_dir=d / "data")
    assert meta["step"] == 3 and loaded.puzzle_emb.weights.shape[0] == 7


@pytest.mark.parametrize("ema", [False, True])  # the notebook's default EMA averages no parameter here
def test_finetune_freeze_weights_trains_only_the_table(ttt_setup, sampled_ids, ema):
    d, model = ttt_setup
    finetune.finetune(_spec(d, f"frozen-{ema}", max_steps=2, freeze_weights=True, ema=ema))
    sd, before = _state(d / f"frozen-{ema}"), model.state_dict()
    for k, v in before.items():
        if k != "puzzle_emb.weights":
            assert torch.equal(sd[k], v), k
    mean = before["puzzle_emb.weights"][1:].mean(0)
    assert_moved_rows(sd["puzzle_emb.weights"], mean, sampled_ids)


def test_finetune_stops_at_the_deadline(ttt_setup):
    d, _ = ttt_setup
    finetune.finetune(_spec(d, "late", deadline=time.time() - 1))
    res = json.loads((d / "late" / "ttt_finetune.json").read_text())
    assert res["steps"] == 1 and res["stopped_by"] == "clock: the fine-tune's share of the budget"
    assert res["stop_kind"] == "clock"


def test_finetune_keeps_time_for_the_evaluation(ttt_setup):
    """From step 5 the worker predicts the evaluation's duration from its own speed and stops
    early enough for twice that (+5 min) before the final deadline."""
    d, _ = ttt_setup
    spec = _spec(d, "reserve", max_steps=50)
    spec.update(final_deadline=spec["deadline"], eval_rows=10**7)  # an evaluation that cannot fit
    finetune.finetune(spec)
    res = json.loads((d / "reserve" / "ttt_finetune.json").read_text())
    assert res["steps"] == 5 and res["stopped_by"].startswith("clock: the evaluation's reserve")


class StepClock:
    """A fake wall clock for the fine-tune worker (finetune.clock) that advances `step_s` seconds per
    training step and stands still otherwise: a GPU of exactly that speed, whatever this machine's."""

    def __init__(self, monkeypatch, step_s: float, start: float = 1_000_000.0):
        self.now, self.step_s = start, step_s
        monkeypatch.setattr(finetune, "clock", lambda: self.now)
        after_step = finetune._FinetuneHooks.after_step

        def timed_step(hooks, it):  # the step's time passes before the worker looks at the clock
            self.now += self.step_s
            return after_step(hooks, it)

        monkeypatch.setattr(finetune._FinetuneHooks, "after_step", timed_step)


def test_a_slow_gpu_is_cut_in_time_for_the_evaluation(ttt_setup, monkeypatch):
    """The worst case of the projection (T4x2 at base clock, docs/performance.md) in small: steps so
    slow (a fake clock, 1 s per step) that the max_epochs cap cannot be reached before the final
    deadline. The fine-tune predicts the evaluation from its own speed and stops at the first step
    where what is left is within the reserve (finetune.eval_reserve_s): not a step later, and not a
    step earlier."""
    from types import SimpleNamespace

    d, _ = ttt_setup
    step_s, eval_rows, gbs = 1.0, 10, 4
    clock = StepClock(monkeypatch, step_s)
    arch = SimpleNamespace(halt_max_steps=TINY["halt_max_steps"], n_outer_cycles=TINY["n_outer_cycles"])
    reserve = finetune.eval_reserve_s(eval_rows, arch, step_s / gbs)  # at the worker's (fake) speed
    start = clock.now
    final = start + reserve + 8.5 * step_s  # the cut falls between steps, after the 5 timed ones
    spec = _spec(d, "slow", deadline=final + 60, global_batch_size=gbs)  # a later deadline: not the stop
    spec.update(final_deadline=final, eval_rows=eval_rows)
    finetune.finetune(spec)
    res = json.loads((d / "slow" / "ttt_finetune.json").read_text())
    assert res["stopped_by"].startswith("clock: the evaluation's reserve"), res
    assert res["steps"] < res["total_steps"] == 4000 * 4 // gbs  # the max_epochs cap: 4000 x 4 demo pairs
    assert res["s_per_step"] == pytest.approx(step_s)  # the speed the worker measured is the clock's
    left = final - clock.now  # what the evaluation gets, the weights saved at the cut
    assert clock.now == pytest.approx(start + res["steps"] * step_s)
    assert left <= reserve  # not a step earlier: it ran on until no more than the reserve was left ...
    assert left + step_s > reserve  # ... nor a step later: at the step before, more than that was left


def test_reserve_covers_the_measured_evaluation_speed():
    """The reserve predicts an evaluation row's time as eval_train_rows training rows (FLOP ratio x
    EVAL_SLOWDOWN) at the fine-tune's own speed. On the committed GPU results (the newest, as
    trmkit.perf picks them) the prediction is at least every measured evaluation -- the notebook's
    (compiled, process start included) and bench/evaluate.py's eager one -- so the reserve
    (EVAL_RESERVE_FACTOR x the prediction plus EVAL_START_S) covers that many times what it took."""
    from trmkit import perf

    gpu_path, ttt_path = perf.newest("gpu-2*.json"), perf.newest("gpu-ttt-*.json")
    gpu_json = json.loads(gpu_path.read_text())
    ref = perf.reference_from(gpu_json, json.loads(ttt_path.read_text()))
    eager = re.search(r"^default\s+([\d.]+)", gpu_json["eval_compile_off"]["tail"], re.M)
    assert eager, f"{gpu_path.name}: no eager evaluation figure (bench/evaluate.py's `default` row)"
    measured_s_per_row = {"notebook": ref.eval_s_per_row, "eager": 1 / float(eager.group(1))}
    predicted = finetune.eval_train_rows(ref.arch) * ref.train_s_per_row
    rows = 1000
    for name, s in measured_s_per_row.items():
        assert predicted >= s, (name, predicted, s)
        assert (finetune.eval_reserve_s(rows, ref.arch, ref.train_s_per_row)
                >= finetune.EVAL_RESERVE_FACTOR * rows * s + finetune.EVAL_START_S), name


@pytest.mark.slow
def test_notebook_cuts_a_slow_finetune_and_submits_before_the_deadline(ttt_setup, tmp_path, monkeypatch):
    """The notebook's whole path (ttt.run) on a GPU too slow for its defaults: the fine-tune is cut
    by the evaluation reserve, the evaluation runs, and the model's submission is written before
    the deadline."""
    d, _ = ttt_setup
    _comp(tmp_path / "input" / "comp")
    monkeypatch.delenv("KAGGLE_IS_COMPETITION_RERUN", raising=False)  # hidden tasks: the full budget
    monkeypatch.setenv(finetune.SLOW_ENV, "0.2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TRM_TTT_SCRATCH", str(tmp_path / "scratch"))
    ctx = ttt.start(str(tmp_path / "input"), str(tmp_path / "working"))
    budget_s = finetune.EVAL_START_S + 45  # the reserve's fixed part + 45 s for everything else
    p = ttt.TTTParams(device="cpu", num_aug=2, global_batch_size=4, lr_warmup_steps=1, log_interval=20,
                      eval_batch_size=8, budget_hours=budget_s / 3600, safety_minutes=0.0,
                      install_wheels=False, weights_dir=str(d / "slim"))
    ttt.install(ctx, p)
    report = ttt.run(ctx, p)
    ft = report["finetune"]
    assert report["status"] == "ok" and ft["stopped_by"].startswith("clock: the evaluation's reserve"), ft
    assert ft["steps"] < ft["total_steps"] and report["tasks_from_model"] == len(TASKS)
    assert time.time() < ctx.deadline(p)
    sub = json.loads((tmp_path / "working" / "submission.json").read_text())
    assert validate_submission(sub, TASKS) == []


def test_finetune_crash_hook(ttt_setup, monkeypatch):
    d, _ = ttt_setup
    with pytest.raises(RuntimeError, match="injected crash after 2"):
        finetune.finetune(_spec(d, "crash", crash_after_steps=2))
    monkeypatch.setenv(ttt.CRASH_ENV, "1")
    with pytest.raises(RuntimeError, match="injected crash after 1"):
        finetune.finetune(_spec(d, "crash2"))
    assert not (d / "crash").exists() and not (d / "crash2").exists()


def test_auto_accum():
    """The split the fine-tune picks from free GPU memory, by its properties: micro-batches divide the
    local batch, the predicted peak of one fits the free memory, and no fewer micro-batches would fit."""
    from trm.model import ModelConfig

    cfg = ModelConfig()  # paper size
    per_row = finetune.row_bytes(cfg)
    assert 0 < per_row < finetune.row_bytes(cfg, compiled=False)  # the compiled net keeps less
    assert finetune.row_bytes(dataclasses.replace(cfg, n_layers=4)) == 2 * per_row  # linear in the blocks
    assert finetune._auto_accum(cfg, 96, None) == 1  # not CUDA
    for free_rows in (96, 95, 40, 20, 7, 1, 0):
        free = finetune.FIXED_BYTES + free_rows * per_row
        accum = finetune._auto_accum(cfg, 96, free)
        micro = 96 // accum
        assert 96 % accum == 0, free_rows
        assert finetune.predicted_peak_bytes(cfg, micro) <= free or micro == 1, free_rows  # one row at least
        fewer = [a for a in range(1, accum) if 96 % a == 0]  # every coarser split would not fit
        assert all(finetune.predicted_peak_bytes(cfg, 96 // a) > free for a in fewer), free_rows
    assert ttt._divisible(768, 3) % 3 == 0 and ttt._divisible(768, 3) <= 768 and ttt._divisible(2, 4) == 4


@pytest.mark.slow
def test_finetune_under_torchrun_two_processes(ttt_setup, tmp_path):
    """The multi-GPU path on CPU (gloo): 2 ranks split the batch, agree on when to stop, rank 0 saves."""
    d, _ = ttt_setup
    spec = _spec(d, "dist", max_steps=3)
    spec.update(final_deadline=spec["deadline"], eval_rows=9)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        "-m", "trm.finetune", str(tmp_path / "spec.json")],
                       capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads((d / "dist" / "ttt_finetune.json").read_text())
    assert res["world_size"] == 2 and res["steps"] == 3 and res["global_batch_size"] == 4


# --------------------------------------------------------------------------- a dying or hanging worker

def _torchrun_finetune(spec: dict, tmp_path: Path, fault: str) -> subprocess.CompletedProcess:
    """Two fine-tune processes under torchrun; a run that hangs past HANG_S raises TimeoutExpired."""
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node=2", "-m", "trm.finetune", str(tmp_path / "spec.json")],
                          capture_output=True, text=True, cwd=REPO, timeout=HANG_S,
                          env={**os.environ, "OMP_NUM_THREADS": "1", ttt.FAULT_ENV: fault})


HANG_S = 300  # far above the 15 s collective timeout + two torch start-ups: only a hang gets here


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["kill", "stall"])
def test_dead_or_stalled_worker_ends_the_finetune(ttt_setup, tmp_path, kind):
    """gloo on CPU: rank 1 dies (exit without cleanup) or hangs after step 3. The job must end (the
    collective timeout, 15 s here, frees rank 0), not hang, and rank 0's periodic save
    must be a complete, loadable checkpoint (the weights the notebook then evaluates)."""
    from trm.checkpoint import load_checkpoint

    d, _ = ttt_setup
    spec = _spec(d, f"fault-{kind}", rank_timeout_minutes=0.25, save_every_minutes=0.0)
    r = _torchrun_finetune(spec, tmp_path, f"{kind}:1:3")  # a hang fails here (HANG_S)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-2000:]
    assert f"injected fault: {kind} at step 3" in out
    res = json.loads((d / f"fault-{kind}" / "ttt_finetune.json").read_text())
    assert res["stopped_by"].startswith("periodic save") and 2 <= res["steps"] <= 4
    model, meta = load_checkpoint(d / f"fault-{kind}", map_location="cpu")
    assert meta["step"] == res["steps"]


@pytest.mark.slow
def test_notebook_evaluates_the_last_saved_weights_when_a_worker_dies(ttt_setup, tmp_path, monkeypatch):
    """The notebook's path (ttt.run) with two fine-tune processes, one killed mid-run: the run
    still evaluates (from the last periodic save) and writes a valid submission from the model."""
    d, _ = ttt_setup
    comp = _comp(tmp_path / "input" / "comp")
    monkeypatch.delenv("KAGGLE_IS_COMPETITION_RERUN", raising=False)  # hidden tasks: submit, full budget
    monkeypatch.setenv(ttt.FAULT_ENV, "kill:1:3")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TRM_TTT_SCRATCH", str(tmp_path / "scratch"))
    ctx = ttt.start(str(tmp_path / "input"), str(tmp_path / "working"))
    assert ctx.comp_dir == comp
    p = ttt.TTTParams(device="cpu", num_aug=2, global_batch_size=4, lr_warmup_steps=1, log_interval=1,
                      eval_batch_size=8, cpu_workers=2, rank_timeout_minutes=0.25, save_every_minutes=0.0,
                      budget_hours=1.0, safety_minutes=0.0, install_wheels=False, weights_dir=str(d / "slim"))
    ttt.install(ctx, p)
    report = ttt.run(ctx, p)
    assert report["status"] == "ok" and report["tasks_from_model"] == len(TASKS)
    assert (report["finetune"]["stopped_by"].startswith("worker failure")
            and report["finetune"]["world_size"] == 2)
    sub = json.loads((tmp_path / "working" / "submission.json").read_text())
    assert validate_submission(sub, TASKS) == []


def _upstream_weights(model, d: Path, step: int = 5) -> Path:
    """`model` saved as upstream publishes it: a compiled-wrapper state_dict file `step_N` and
    all_config.yaml beside it (what NVARC's Kaggle dataset holds)."""
    from trm.checkpoint import kit_key_to_upstream

    d.mkdir(parents=True, exist_ok=True)
    torch.save({kit_key_to_upstream(k): v for k, v in model.state_dict().items()}, d / f"step_{step}")
    up = model.config.to_upstream()
    def fmt(v):  # as OmegaConf writes them: true/false, floats with a dot (1.0e-05)
        return (str(v).lower() if isinstance(v, bool)
                else f"{v:.1e}" if isinstance(v, float) and v < 1e-3 else v)

    lines = ["arch:"] + [f"  {k}: {fmt(v)}" for k, v in up.items()
                         if k not in ("loss", "num_puzzle_identifiers", "vocab_size", "seq_len")]
    lines += ["  loss:", f"    loss_type: {model.config.loss_type}", "    name: losses@ACTLossHead"]
    (d / "all_config.yaml").write_text("\n".join(lines) + "\n")
    return d / f"step_{step}"


def test_upstream_checkpoint_attached_as_is_is_found_and_fine_tuned(ttt_setup, tmp_path):
    """NVARC-style: the weights input is an upstream step_N + all_config.yaml (no kit bundle). It is
    found, its table is mean-filled to the new ids, and the fine-tune may change the recursion
    (H/L cycles, halt_max_steps) -- shapes stay, so the weights load."""
    from trm.checkpoint import load_checkpoint

    d, model = ttt_setup
    older = _upstream_weights(model, tmp_path / "input" / "nvarc" / "ckpt", step=3)
    newest = _upstream_weights(model, tmp_path / "input" / "nvarc" / "ckpt", step=12)
    assert older.is_file()
    assert kin.find_weights(tmp_path / "input", tmp_path / "unpack") == newest  # the newest step
    spec = _spec(d, "from-upstream", max_steps=2, ema=False, n_outer_cycles=2, n_latent_steps=2,
                 halt_max_steps=3)
    spec["weights"] = str(newest)
    finetune.finetune(spec)
    res = json.loads((d / "from-upstream" / "ttt_finetune.json").read_text())
    assert res["mean_init"] is True and res["steps"] == 2
    assert res["arch"] == {"n_outer_cycles": 2, "n_latent_steps": 2, "halt_max_steps": 3}
    tuned, _ = load_checkpoint(d / "from-upstream", map_location="cpu")
    assert (tuned.config.n_outer_cycles, tuned.config.halt_max_steps) == (2, 3)
    assert tuned.config.hidden_size == model.config.hidden_size


@pytest.mark.slow
def test_validation_scores_seen_and_unseen_tasks_apart(tmp_path, monkeypatch):
    """Weights pretrained on a dataset holding aaaa0001 but not bbbb0002: validation on both reports
    each task's side and a score per side; validate_unseen_only keeps the unseen one only."""
    from trm.checkpoint import export_slim, save_checkpoint
    from trm.model import TRM, ModelConfig

    write(tmp_path / "pre.json", {"aaaa0001": TASKS["aaaa0001"]})
    pre = ttt.build_ttt_dataset(tmp_path / "pre.json", tmp_path / "pre", num_aug=2, repo=REPO)
    model = TRM(ModelConfig(**TINY, num_puzzle_identifiers=pre["num_puzzle_identifiers"]))
    save_checkpoint(tmp_path / "full", model, dataset_dir=tmp_path / "pre", meta={"step": 1})
    export_slim(tmp_path / "full", tmp_path / "input" / "weights")
    assert ttt.pretrained_tasks(tmp_path / "input" / "weights") == {"aaaa0001"}
    comp = _comp(tmp_path / "input" / "comp", test={"aaaa0001": TASKS["aaaa0001"]}, extra=False)
    write(comp / kin.EVAL_CHALLENGES, TASKS)
    write(comp / kin.EVAL_SOLUTIONS, {"aaaa0001": [[[2, 2], [0, 0]]], "bbbb0002": [[[8, 7]], [[1], [2]]]})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("KAGGLE_IS_COMPETITION_RERUN", raising=False)
    base = dict(device="cpu", num_aug=2, global_batch_size=4, lr_warmup_steps=1, log_interval=1, max_steps=2,
                eval_batch_size=8, install_wheels=False, check_minutes=None)
    for only, want in ((False, {"aaaa0001", "bbbb0002"}), (True, {"bbbb0002"})):
        monkeypatch.setenv("TRM_TTT_SCRATCH", str(tmp_path / f"scratch-{only}"))
        ctx = ttt.start(str(tmp_path / "input"), str(tmp_path / f"working-{only}"))
        p = ttt.TTTParams(**base, validate_unseen_only=only)
        ttt.install(ctx, p)
        report = ttt.run(ctx, p)
        assert report["mode"] == "validate" and report["status"] == "ok" and report["tasks"] == len(want)
        val = report["validation"]
        assert val["pretraining_tasks_known"] is True
        assert set(val["seen"]["tasks"]) | set(val["unseen"]["tasks"]) == want
        assert val["unseen"]["tasks"] == ["bbbb0002"] and val["unseen"]["n_test_outputs"] == 2
        assert val["seen"]["tasks"] == (["aaaa0001"] if not only else [])
        assert "tasks seen in pretraining" in ttt.summary(report) or only


def test_finetune_config_takes_every_shared_parameter_by_name():
    """A notebook parameter that names a TrainConfig field means that field: no hand re-mapping."""
    from trm.config import TrainConfig
    from trm.model import ModelConfig

    names = ({f.name for f in dataclasses.fields(TrainConfig)}
             & {f.name for f in dataclasses.fields(ttt.TTTParams)})
    assert {"lr", "puzzle_emb_lr", "lr_warmup_steps", "weight_decay", "puzzle_emb_weight_decay", "ema",
            "ema_rate", "freeze_weights", "seed", "device"} <= names
    p = ttt.TTTParams(lr=3e-4, puzzle_emb_lr=0.05, lr_warmup_steps=7, weight_decay=0.2,
                      puzzle_emb_weight_decay=0.3,
                      ema=False, ema_rate=0.9, freeze_weights=True, seed=11, device="cpu", finetune_epochs=40)
    cfg = finetune.finetune_config(p, ModelConfig(), "d", 96, 2)
    for name in names - {"global_batch_size", "grad_accum_steps"}:
        assert getattr(cfg, name) == getattr(p, name), name
    assert ((cfg.global_batch_size, cfg.grad_accum_steps, cfg.epochs, cfg.evaluate, cfg.lr_min_ratio)
            == (96, 2, 40, False, 1.0))
