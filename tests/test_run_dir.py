"""A run directory belongs to one run: a second fresh run is refused, a concurrent writer is
refused, a lock left by a killed process does not block --resume. Run: pytest tests/test_run_dir.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import trm.train as T
from trm.runlock import LOCK_NAME, RunDirError, RunLock, default_run_name
from trmkit.show import resolve_training

REPO = Path(__file__).resolve().parents[1]
TINY = ["--preset", "smoke", "--arch.hidden_size", "32", "--arch.num_heads", "2", "--arch.n_layers", "1",
        "--arch.n_outer_cycles", "1", "--arch.n_latent_steps", "1", "--arch.halt_max_steps", "2",
        "--global_batch_size", "8", "--eval_interval", "1", "--epochs", "1", "--evaluate", "false",
        "--progress", "false", "--num_threads", "1", "--stop_at_step", "2"]


@pytest.fixture(scope="module")
def data(golden):
    return golden / "arc_build" / "output"


def _train(data, run: Path, *extra) -> int:
    return T.main([*TINY, "--data_path", str(data), "--run_dir", str(run), *extra])


def _err_lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_second_fresh_run_is_refused_and_first_run_kept(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(data, run) == 0
    assert not (run / LOCK_NAME).exists(), "the lock is released when the run ends"
    before = {p: p.read_bytes() for p in [run / "config.json", run / "metrics.jsonl"]}
    steps = sorted(p.name for p in (run / "checkpoints").iterdir())
    capsys.readouterr()
    assert _train(data, run, "--seed", "7") == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and err[0].startswith(f"error: run directory {run} already holds a run"), err
    assert f"--resume {run}" in err[0] and "run_name" in err[0]
    assert {p: p.read_bytes() for p in before} == before, "the refused run wrote nothing"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == steps
    assert not (run / LOCK_NAME).exists()


def test_notebook_path_refuses_before_launching(data, tmp_path, monkeypatch):
    monkeypatch.setenv("TRM_RUNS_DIR", str(tmp_path))
    (tmp_path / "taken" / "checkpoints").mkdir(parents=True)
    (tmp_path / "taken" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(RunDirError, match="already holds a run"):
        resolve_training("smoke", [], "taken", str(data))
    cfg, _ = resolve_training("smoke", ["--resume", str(tmp_path / "taken")], None, str(data))
    assert cfg.run_dir == str(tmp_path / "taken")  # --resume of the same dir is allowed


def test_default_run_names_are_unique():
    names = {default_run_name("smoke") for _ in range(50)}
    assert len(names) == 50 and all(n.startswith("smoke-") for n in names)
    make = (REPO / "Makefile").read_text()
    assert "RUN ?=\n" in make and "$(if $(RUN),--run $(RUN))" in make


HOLD = """
import sys, time
from trm.runlock import RunLock
lock = RunLock.acquire(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_concurrent_writer_is_refused(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(data, run, "--stop_at_step", "1") == 0
    config = (run / "config.json").read_bytes()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for extra in ([], ["--resume", str(run)]):  # neither a fresh run nor a resume may write there
            capsys.readouterr()
            assert _train(data, run, *extra) == 2
            err = _err_lines(capsys)
            assert (len(err) == 1
                    and f"is locked by process {holder.pid} on {socket.gethostname()}" in err[0]), err
        assert (run / "config.json").read_bytes() == config
        assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_1"]
        info = json.loads((run / LOCK_NAME).read_text())
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname() and info["started"]
    finally:
        holder.kill()
        holder.wait()


def test_exclusive_create_lets_only_one_holder(tmp_path):
    first = RunLock.acquire(tmp_path / "run")
    with pytest.raises(RunDirError, match="is locked by process"):
        RunLock.acquire(tmp_path / "run")  # the same process, a second notebook cell: refused too
    first.release()
    with RunLock.acquire(tmp_path / "run"):
        pass
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_lock_of_killed_process_does_not_block_resume(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(data, run, "--stop_at_step", "1") == 0
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00"}
    (run / LOCK_NAME).write_text(json.dumps(stale))  # what kill -9 mid-run leaves behind
    capsys.readouterr()
    assert _train(data, run, "--resume", str(run), "--stop_at_step", "2") == 0
    out = capsys.readouterr().out
    assert "removed a stale lock" in out and "resuming from" in out
    assert (run / "checkpoints" / "step_2").is_dir() and not (run / LOCK_NAME).exists()
    assert not list(run.glob(f"{LOCK_NAME}.stale-*"))


def test_lock_from_another_host_is_left_alone(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    other = {"pid": _dead_pid(), "host": "some-other-node", "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (run / LOCK_NAME).write_text(json.dumps(other))
    with pytest.raises(RunDirError, match=f"if that process is gone, delete {run / LOCK_NAME}"):
        RunLock.acquire(run)
    assert json.loads((run / LOCK_NAME).read_text()) == other
