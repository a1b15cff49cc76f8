"""Provenance files of a run dir: real inventory, no home paths, no secrets.
Run: pytest tests/test_provenance.py"""

from __future__ import annotations

import torch

import trm
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
    sha = git_state()["sha"]
    if sha:
        assert sha in commit
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
    assert command_line(None).startswith("in-process") or "trm.train" in command_line(None)
