"""Provenance files of a run dir: real inventory, no home paths, no secrets.
Run: pytest tests/test_provenance.py"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import trm
from trm import provenance
from trm.provenance import command_line, git_state, redact, write_provenance


def test_provenance_files(tmp_path, monkeypatch):
    home = str(tmp_path / "home" / "alice")
    monkeypatch.setenv("HOME", home)
    monkeypatch.setenv("WANDB_API_KEY", "sekrit-wandb")
    monkeypatch.setenv("HF_TOKEN", "sekrit-hf")
    monkeypatch.setenv("NCCL_PASSWORD", "sekrit-nccl")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("TRM_RUNS_DIR", f"{home}/runs")
    run = tmp_path / "run"
    argv = ["--preset", "smoke", "--data_path", f"{home}/data/x", "--wandb_api_key", "sekrit-arg",
            "token=sekrit2"]
    write_provenance(run, world_size=2, argv=argv, extra={"grad_accum_steps": 2})

    commands = (run / "COMMANDS.txt").read_text()
    env = (run / "ENVIRONMENT.txt").read_text()
    commit = (run / "TRM_COMMIT.txt").read_text()
    assert "-m trm.train --preset smoke --data_path ~/data/x" in commands
    assert ("launcher: python" in commands and "world_size: 2" in commands
            and "grad_accum_steps: 2" in commands)
    assert "env MASTER_ADDR=10.0.0.1" in commands and "env TRM_RUNS_DIR=~/runs" in commands
    assert f"torch: {torch.__version__}" in env and "python: 3." in env and "gpu count:" in env
    assert "cudnn:" in env and "# pip freeze" in env and "numpy==" in env
    assert trm.UPSTREAM_COMMIT in commit and "kit git sha:" in commit and "kit dirty:" in commit
    assert f"kit git sha: {git_state()['sha'] or 'unknown'}" in commit  # this checkout's, as git_state saw it
    for text in (commands, env, commit):
        assert "sekrit" not in text and home not in text and "/home/" not in text
        assert "WANDB_API_KEY" not in text and "HF_TOKEN" not in text

    write_provenance(run, world_size=1, argv=["--resume", str(run)])  # a second invocation appends
    assert (run / "COMMANDS.txt").read_text().count("launcher:") == 2


def test_torchrun_launcher_and_redaction(monkeypatch):
    monkeypatch.setenv("HOME", "/home/bob")
    assert redact("/home/bob/x and /Users/carol/y") == "~/x and ~/y"
    monkeypatch.setenv("LOCAL_RANK", "0")
    line = command_line(["--preset", "smoke"])
    assert "-m trm.train --preset smoke" in line
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.setattr(sys, "argv", ["/opt/bin/pytest", "-q"])  # trm.train.train called in-process
    assert command_line(None) == "in-process trm.train.train(config) from /opt/bin/pytest"
    monkeypatch.setattr(sys, "argv", [str(Path("trm") / "train.py"), "--preset", "smoke"])  # -m trm.train
    assert command_line(None).endswith("-m trm.train --preset smoke")


def test_commit_file_records_the_checkouts_git_state(tmp_path):
    """git_state on a real repository -- clean, then with a tracked file changed -- and outside git;
    TRM_COMMIT.txt says what git_state says."""
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e", *args],
                              capture_output=True, text=True, check=True).stdout.strip()

    git("init", "-q")
    (repo / "f.txt").write_text("1\n")
    git("add", "f.txt")
    git("commit", "-qm", "one")
    (repo / "untracked.txt").write_text("not counted\n")
    assert git_state(repo) == {"sha": git("rev-parse", "HEAD"), "dirty": False}
    (repo / "f.txt").write_text("2\n")
    assert git_state(repo)["dirty"] is True
    assert git_state(tmp_path / "not-git") == {"sha": None, "dirty": None}
    for state, says in (({"sha": git("rev-parse", "HEAD"), "dirty": True}, "yes"),
                        ({"sha": None, "dirty": None}, "unknown")):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(provenance, "git_state", lambda state=state: state)
            write_provenance(tmp_path / f"run-{says}", world_size=1, argv=[])
        commit = (tmp_path / f"run-{says}" / "TRM_COMMIT.txt").read_text()
        assert f"kit git sha: {state['sha'] or 'unknown'}" in commit and f"kit dirty: {says}" in commit
