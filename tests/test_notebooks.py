"""Notebooks: Jupytext pairs in sync, literal-only parameters cells, the runner's plumbing, and
(slow) the three notebooks executed through papermill at the demo's quick size (`TRM_DEMO_QUICK=1 make demo`).

    .venv/bin/pytest -q tests/test_notebooks.py                 # everything (~2-3 min on 2 CPUs)
    .venv/bin/pytest -q tests/test_notebooks.py -m "not slow"   # seconds
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from trmkit.notebooks import paired_notebooks

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))
PAIRS = paired_notebooks()  # ours, and kaggle/'s competition notebook


def _parameters_cells(py: Path) -> list:
    nb = jupytext.read(py)
    return [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]


def _parameters(py: Path) -> dict:
    """name -> literal value of the parameters cell (asserting it holds only literals)."""
    (cell,) = _parameters_cells(py)
    values = {}
    for node in ast.parse(cell.source).body:
        assert (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)), \
            f"{py.name}: parameters cell may only hold `name = literal` lines, got {ast.unparse(node)!r}"
        values[node.targets[0].id] = ast.literal_eval(node.value)  # raises on anything but a literal
    return values


def test_notebooks_present():
    assert [p.stem for p in NOTEBOOKS] == ["01_build_dataset", "02_train", "03_evaluate"]


@pytest.mark.parametrize("py", PAIRS, ids=lambda p: str(p.relative_to(REPO)))
def test_pair_in_sync(py):
    from trmkit.notebooks import pair_problems

    assert pair_problems(py, outputs_allowed=py.parent.name != "notebooks") == []


@pytest.mark.parametrize("ipynb", [p.with_suffix(".ipynb") for p in PAIRS],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_notebook_names_its_kernel(ipynb):
    """Kaggle runs a pushed notebook with papermill and no -k / -l: the notebook must name both."""
    meta = json.loads(ipynb.read_text())["metadata"]
    assert meta["kernelspec"] == {"display_name": "Python 3", "language": "python", "name": "python3"}
    assert meta["language_info"]["name"] == "python"


def test_papermill_without_k_refuses_a_notebook_without_kernelspec(tmp_path):
    """What the check above guards against, shown with papermill itself: no -k and no kernelspec
    stops before the first cell; the kit's metadata gets the same tiny notebook executed."""
    import papermill as pm

    from trmkit.notebooks import KERNELSPEC, LANGUAGE_INFO, kernel_problems

    bare = {"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": "x = 6 * 7"}]}
    assert len(kernel_problems(bare)) == 2
    (tmp_path / "bare.ipynb").write_text(json.dumps(bare))
    with pytest.raises(ValueError, match="No kernel name found"):
        pm.execute_notebook(str(tmp_path / "bare.ipynb"), str(tmp_path / "out.ipynb"), progress_bar=False)
    named = {**bare, "metadata": {"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO}}
    assert kernel_problems(named) == []
    (tmp_path / "named.ipynb").write_text(json.dumps(named))
    pm.execute_notebook(str(tmp_path / "named.ipynb"), str(tmp_path / "out.ipynb"), progress_bar=False,
                        cwd=str(tmp_path))
    assert json.loads((tmp_path / "out.ipynb").read_text())["cells"][0]["execution_count"] == 1


def test_pair_check_catches_drift(tmp_path):
    from trmkit.notebooks import pair_problems, sync_pair

    py = tmp_path / "nb.py"
    py.write_text((REPO / "notebooks" / "02_train.py").read_text())
    ipynb = sync_pair(py)
    assert pair_problems(py) == []
    before = ipynb.read_bytes()
    assert sync_pair(py).read_bytes() == before  # regenerating gives the same bytes (no random cell ids)
    py.write_text(py.read_text().replace('n_gpus = 1', 'n_gpus = 2'))
    assert any("differs" in p for p in pair_problems(py))


def test_jupytext_sync_keeps_py_byte_identical(tmp_path):
    """With jupytext.toml's filters `jupytext --sync` rewrites nothing in the .py, and keeps the
    .ipynb's kernelspec (which the filters leave out of the .py)."""
    for name in ("jupytext.toml", "notebooks/02_train.py", "notebooks/02_train.ipynb"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    py = tmp_path / "notebooks" / "02_train.py"
    py.write_text(py.read_text() + "\n# %%\nedited = True\n")  # the .py is newer: --sync rewrites the .ipynb
    subprocess.run([str(Path(sys.executable).with_name("jupytext")), "--sync", str(py)], check=True,
                   capture_output=True, cwd=tmp_path)
    assert py.read_bytes() == (REPO / "notebooks" / "02_train.py").read_bytes() + b"\n# %%\nedited = True\n"
    synced = json.loads(py.with_suffix(".ipynb").read_text())
    assert "edited = True" in synced["cells"][-1]["source"]
    assert synced["metadata"]["kernelspec"]["name"] == "python3"
    assert not py.read_text().startswith("# ---")  # no YAML header


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_literals_only(py):
    assert len(_parameters_cells(py)) == 1, "exactly one cell tagged parameters"
    params = _parameters(py)
    assert params
    # papermill must infer every one of them (it cannot read a line holding two '=')
    from papermill.translators import PythonTranslator

    (cell,) = _parameters_cells(py)
    assert [p.name for p in PythonTranslator.inspect(cell)] == list(params)


def test_parameter_names_are_package_config_names():
    from dataset_builder.build import BuildConfig
    from trm.config import TrainConfig

    nb = {p.stem: _parameters(p) for p in NOTEBOOKS}
    assert set(nb["01_build_dataset"]) <= {f.name for f in dataclasses.fields(BuildConfig)}
    assert (set(nb["02_train"]) - {"preset", "n_gpus", "overrides"}
            <= {f.name for f in dataclasses.fields(TrainConfig)})
    out = subprocess.run([sys.executable, "-m", "trm.evaluate", "--help"],
                         capture_output=True, text=True).stdout
    flags = {f.replace("-", "_") for f in re.findall(r"--([a-z][a-z-]*)", out)} | {"data"}
    assert set(nb["03_evaluate"]) <= flags, set(nb["03_evaluate"]) - flags


def test_cli_passes_only_known_parameters(monkeypatch, tmp_path):
    """What `python -m trmkit.notebooks build/train/evaluate` injects exists in each parameters cell."""
    import trmkit.notebooks as tn

    seen = {}

    def fake(name, out_dir, parameters, **_):
        seen[name] = parameters
        out = Path(out_dir) / f"{name}.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")
        out.with_suffix(".html").write_text("")
        return out

    monkeypatch.setattr(tn, "execute_notebook", fake)
    monkeypatch.setenv("TRM_RUNS_DIR", str(tmp_path / "runs"))
    from trm.checkpoint import save_checkpoint
    from trm.model import TRM, ModelConfig

    # a real (verified) checkpoint: evaluate checks it
    ckpt = tmp_path / "runs" / "x" / "checkpoints" / "step_7"
    save_checkpoint(ckpt, TRM(ModelConfig(hidden_size=16, num_heads=1, n_layers=1, puzzle_emb_ndim=16,
                                          puzzle_emb_len=1, forward_dtype="float32")), meta={"step": 7})
    (ckpt.parent / "step_9").mkdir()  # newer but incomplete: skipped
    assert tn.main(["build", "--output-dir", str(tmp_path / "d"), "--tasks", "3",
                    "--nb-dir", str(tmp_path)]) == 0
    assert tn.main(["train", "--preset", "smoke", "--run", "r1", "--data", "d", "--epochs", "4"]) == 0
    assert tn.main(["evaluate", "--checkpoint", str(ckpt.parent.parent), "--data", "d"]) == 0
    for name, params in seen.items():
        assert set(params) <= set(_parameters(REPO / "notebooks" / f"{name}.py")), name
    assert seen["02_train"]["overrides"] == ["--epochs", "4"] and seen["02_train"]["run_name"] == "r1"
    assert (tmp_path / "runs" / "r1" / "02_train.ipynb").is_file()  # executed notebook lands in the run dir
    assert seen["03_evaluate"]["output_dir"] == str(tmp_path / "runs" / "x" / "evaluate" / "step_7")


def test_resolve_training_run_dir(monkeypatch, tmp_path):
    from trmkit.show import resolve_training

    monkeypatch.setenv("TRM_RUNS_DIR", str(tmp_path))
    cfg, argv = resolve_training("smoke", ["--epochs", "7"], "abc", "data/x")
    assert ((cfg.run_dir, cfg.run_name, cfg.epochs, cfg.data_path)
            == (str(tmp_path / "abc"), "abc", 7, "data/x"))
    assert argv[:3] == ["--preset=smoke", "--data_path=data/x", "--run_name=abc"]
    cfg, _ = resolve_training("paper-arc2", [])
    assert cfg.run_name.startswith("paper-arc2-") and Path(cfg.run_dir).parent == tmp_path
    cfg, _ = resolve_training("smoke", ["--run_dir", str(tmp_path / "elsewhere")])
    assert cfg.run_dir == str(tmp_path / "elsewhere")


def test_overrides_string_is_split_like_a_shell_line_on_every_path(monkeypatch, tmp_path):
    """02_train's `overrides`: a list is taken as it is, one string (what `papermill -p overrides
    "..."` injects) is split like a shell line -- in training_argv and in launch_training, which
    once spread it character by character into trm.train's arguments."""
    import trm.train
    from trmkit.show import launch_training, override_tokens, training_argv

    assert (override_tokens("--resume 'runs/my run' --epochs 3")
            == ["--resume", "runs/my run", "--epochs", "3"])
    assert override_tokens(["--epochs", 3]) == ["--epochs", "3"] and override_tokens(()) == []
    assert training_argv(None, "--epochs 3") == training_argv(None, ["--epochs", "3"]) == ["--epochs", "3"]
    monkeypatch.setenv("TRM_RUNS_DIR", str(tmp_path))
    seen = []
    monkeypatch.setattr(trm.train, "train", lambda cfg, argv: seen.append((cfg, argv)))
    for overrides in ("--epochs 3 --lr 0.002", ["--epochs", "3", "--lr", "0.002"]):
        run_dir = launch_training("smoke", overrides, run_name=f"r{len(seen)}", data_path="d")
        cfg, argv = seen[-1]
        assert (cfg.epochs, cfg.lr, Path(cfg.run_dir)) == (3, 0.002, run_dir)
        assert argv[argv.index("--epochs"):][:4] == ["--epochs", "3", "--lr", "0.002"]


def test_train_notebook_passes_a_papermill_string_unchanged(monkeypatch, tmp_path):
    """The documented `papermill notebooks/02_train.ipynb OUT -p overrides "--resume runs/arc2"`:
    papermill's own command line injects the string, and the notebook hands it to launch_training as
    it is (which splits it, test above). The cells run here with launch_training recorded."""
    from click.testing import CliRunner
    from papermill.cli import papermill

    import trmkit.show

    out = tmp_path / "02_train.ipynb"
    r = CliRunner().invoke(papermill, [str(REPO / "notebooks" / "02_train.ipynb"), str(out), "--prepare-only",
                                       "-p", "preset", "paper-arc2", "-p", "overrides", "--resume runs/arc2"])
    assert r.exit_code == 0, r.output
    calls = []
    monkeypatch.setattr(trmkit.show, "launch_training", lambda *a, **kw: calls.append((a, kw)) or tmp_path)
    monkeypatch.setattr(trmkit.show, "show_run", lambda run_dir: None)
    ns = {}
    for cell in nbformat.read(out, as_version=4).cells:
        if cell.cell_type == "code":
            exec(cell.source, ns)
    ((args, _),) = calls
    assert args == ("paper-arc2", "--resume runs/arc2")


def test_torchrun_command():
    from trm.launch import torchrun_command

    cmd = torchrun_command(8, ["trm.train", "--preset=paper-arc2"])
    assert "--nproc-per-node=8" in cmd and "--standalone" in cmd
    assert cmd[-3:] == ["-m", "trm.train", "--preset=paper-arc2"]
    assert torchrun_command(1, ["trm.train"]) == [sys.executable, "-m", "trm.train"]


def test_stream_echoes_returns_the_code_and_kills_at_the_timeout(capsys):
    from trm.launch import stream

    assert stream([sys.executable, "-c", "import sys; print('one'); print('two', file=sys.stderr)"]) == 0
    out = capsys.readouterr().out
    assert "one\n" in out and "two\n" in out
    assert stream([sys.executable, "-c", "raise SystemExit(3)"]) == 3
    # a child that would run a minute: killed (SIGKILL, -9) at the 1 s deadline, and says so
    assert stream([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1.0) == -9
    assert "deadline reached" in capsys.readouterr().out


def test_metrics_rows_solve_rates_first():
    from trmkit.show import headline, metrics_rows

    m = {"pass@1": 0.25, "pass@2": 0.5, "pass@5": 0.5, "kaggle_score": 0.4, "kaggle_correct": 2,
         "n_test_outputs": 5, "token_accuracy": 0.9, "exact_row_accuracy": 0.1, "n_tasks": 4}
    labels = [k for k, _ in metrics_rows(m)]
    assert (labels[0].startswith("pass@1") and labels[1].startswith("pass@2")
            and labels[2].startswith("Kaggle"))
    tok = labels.index("token accuracy (per cell, NOT a solve rate)")
    assert tok > max(i for i, k in enumerate(labels) if k.startswith(("pass@", "Kaggle")))
    assert "NOT a solve rate" in headline(m) and "pass@2 0.5000" in headline(m)
    assert dict(metrics_rows({**m, "kaggle_score": None}))[labels[2]] == "n/a (no labels)"


@pytest.mark.slow
def test_demo_quick_executes_all_notebooks(tmp_path):
    """The `make demo` path at CI size: papermill runs 01, 02, 03; outputs exist and are valid."""
    from trm.submission import score_submission, validate_submission
    from trmkit.demo import report, run
    from trmkit.show import challenges_for

    out = tmp_path / "demo"
    summary = run(out, quick=True, log_output=False)
    for name in ("01_build_dataset", "02_train", "03_evaluate"):
        nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, (name, errors)
        assert nb.metadata["papermill"]["parameters"], name
        html = (out / f"{name}.html").read_text()
        assert "<html" in html and len(html) > 10_000
    # inline curve
    assert "image/png" in json.dumps(nbformat.read(out / "02_train.ipynb", 4).cells[-1]["outputs"])
    ckpt = Path(summary["checkpoint"])
    assert ckpt.parent == out / "train" / "checkpoints" and (ckpt / "meta.json").is_file()
    for f in ("metrics.jsonl", "config.json", "COMMANDS.txt", "ENVIRONMENT.txt", "TRM_COMMIT.txt",
              "curves.png"):
        assert (out / "train" / f).is_file(), f
    sub = json.loads((out / "eval" / "submission.json").read_text())
    assert validate_submission(sub, challenges_for(out / "data")) == []
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    puzzles = json.loads((out / "data" / "test_puzzles.json").read_text())
    solutions = {t: [p["output"] for p in v["test"]] for t, v in puzzles.items()}
    assert metrics["kaggle_score"] == score_submission(sub, solutions)["score"]  # scored what it wrote
    assert list((out / "eval" / "pictures").glob("*.png"))
    assert json.loads((out / "summary.json").read_text())["metrics"] == metrics
    # the unseen-task part ran the competition notebook's path to a complete submission, once to
    # solve and once from each of the pretrained and a fresh init (too short to learn at this size:
    # tests/test_unseen.py asserts the solved count and the gap), and the report shows both numbers
    u = summary["unseen"]
    assert u["solve"] == u["transfer"]["pretrained"]  # one budget at this size: run once
    for arm in ("pretrained", "fresh"):
        r = u["transfer"][arm]
        assert r["mode"] == "submit" and r["finetune"]["mean_init"] is True and r["n_test_outputs"] == 2, arm
        assert 0 <= r["cell_accuracy"] <= 1, arm
        assert (out / "unseen" / "transfer" / arm / "working" / "submission.json").is_file(), arm
    text = report(summary, out)
    assert "from the pretrained weights test per-cell accuracy" in text and "from a fresh init" in text, text


@pytest.mark.slow
def test_train_notebook_launches_torchrun(golden_build, tmp_path):
    """02_train with n_gpus=2 on CPU: the notebook starts torchrun (gloo, 2 processes) itself and
    its output streams into the executed notebook; the run records the torchrun launcher."""
    from trmkit.notebooks import run_train

    tiny = ["--arch.hidden_size=32", "--arch.num_heads=2", "--arch.n_layers=1", "--arch.n_outer_cycles=1",
            "--arch.n_latent_steps=1", "--arch.halt_max_steps=2", "--global_batch_size=8", "--epochs=1",
            "--eval_interval=1", "--evaluate=false", "--log_interval=1", "--num_threads=1",
            f"--run_dir={tmp_path / 'run'}"]
    nb_path = run_train("smoke", 2, "two", str(golden_build.output), tiny, out_nb_dir=tmp_path,
                        log_output=False)
    text = json.dumps(nbformat.read(nb_path, as_version=4).cells)
    assert "--nproc-per-node=2" in text and "world 2 on cpu, micro-batch 4 x 1" in text
    assert "launcher: torchrun" in (tmp_path / "run" / "COMMANDS.txt").read_text()
    assert (list((tmp_path / "run" / "checkpoints").glob("step_*"))
            and (tmp_path / "run" / "curves.png").is_file())
