"""Resume: exact continuation, SIGKILL mid-run, partial/truncated checkpoints.
Run: pytest tests/test_resume.py

A checkpoint holds the EMA weights (model.pt) plus everything resume needs (train_state.pt:
raw weights, both optimiser states, EMA shadows, step, data position, RNG states and every
micro-batch slot's ACT carry), so N steps in one go == N/2 steps, stop, resume to N, exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import trm.train as T
from trm.checkpoint import CheckpointError, find_checkpoint

TINY = ["--arch.hidden_size", "32", "--arch.num_heads", "2", "--arch.n_layers", "1",
        "--arch.n_outer_cycles", "1",
        "--arch.n_latent_steps", "1", "--arch.halt_max_steps", "3", "--arch.halt_exploration_prob", "0.3",
        "--global_batch_size", "8", "--eval_interval", "1", "--evaluate", "false", "--ema", "true",
        "--progress", "false", "--log_interval", "1", "--lr", "1e-3", "--lr_warmup_steps", "1",
        "--num_threads", "1"]


def _args(data, run, *extra):
    return ["--preset", "smoke", *TINY, "--data_path", str(data), "--run_dir", str(run), *extra]


def _train_lines(run: Path) -> list[dict]:
    return [x for x in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "train/loss" in x]


def _steps(run: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in (run / "checkpoints").iterdir()
                  if p.name.startswith("step_"))


@pytest.fixture(scope="module")
def data(golden_build):
    return golden_build.output


@pytest.fixture(scope="module")
def full_runs(data, tmp_path_factory):
    """optimizer -> a finished 2-epoch run with it (made on first use, once per module)."""
    runs = {}

    def get(optimizer: str) -> Path:
        if optimizer not in runs:
            run = tmp_path_factory.mktemp(f"full-{optimizer}") / "run"
            assert T.main(_args(data, run, "--epochs", "2", "--optimizer", optimizer)) == 0
            runs[optimizer] = run
        return runs[optimizer]

    return get


@pytest.fixture(scope="module")
def full_run(full_runs):
    return full_runs("adam_atan2")


# the optimizer state each checkpoint must carry: AdamATan2's second moments, Muon's momentum too
OPT_STATE = {"adam_atan2": {"dense": "exp_avg_sq"},
             "muon": {"dense": "exp_avg_sq", "muon": "momentum_buffer"}}


@pytest.mark.parametrize("optimizer", sorted(OPT_STATE))
def test_resume_continues_exactly(data, full_runs, tmp_path, optimizer):
    full_run = full_runs(optimizer)
    final = _steps(full_run)[-1]
    half = final // 2 + 1  # mid-iteration: the data position and carries must carry over
    run = tmp_path / "run"
    assert T.main(_args(data, run, "--epochs", "2", "--stop_at_step", str(half),
                        "--optimizer", optimizer)) == 0
    assert _steps(run)[-1] == half
    assert T.main(["--resume", str(run), "--stop_at_step", "0"]) == 0  # config comes from the run dir
    assert _steps(run)[-1] == final
    a = full_run / "checkpoints" / f"step_{final}"
    b = run / "checkpoints" / f"step_{final}"
    for f in ("model.pt", "train_state.pt"):
        sa, sb = (torch.load(x / f, weights_only=False) for x in (a, b))
        if f == "model.pt":
            for k in sa:
                assert torch.equal(sa[k], sb[k]), k
        else:
            assert sa["step"] == sb["step"] == final and sa["loader"] == sb["loader"]
            assert sa["optimizer"] == sb["optimizer"] == optimizer
            for k in sa["raw_params"]:
                assert torch.equal(sa["raw_params"][k], sb["raw_params"][k]), k
                assert torch.equal(sa["ema"][k], sb["ema"][k]), k
            for opt, key in OPT_STATE[optimizer].items():
                ma, mb = sa["optimizers"][opt]["state"], sb["optimizers"][opt]["state"]
                assert ma and all(torch.equal(ma[i][key], mb[i][key]) for i in ma), opt
            assert (sa["optimizers"]["muon"] is None) == (optimizer == "adam_atan2")
    # the same data, step by step: identical loss curves, no step repeated or skipped
    la, lb = _train_lines(full_run), _train_lines(run)
    assert [x["step"] for x in lb] == list(range(1, final + 1))
    assert [x["train/loss"] for x in la] == [x["train/loss"] for x in lb]
    assert (run / "COMMANDS.txt").read_text().count("launcher:") == 2


def test_resume_with_another_optimizer_is_refused(data, full_runs, tmp_path, capsys):
    """Muon's run keeps fewer tensors in AdamATan2's state: one clear line, not a state-dict error."""
    run = tmp_path / "run"
    shutil.copytree(full_runs("muon"), run)
    assert T.main(["--resume", str(run), "--optimizer", "adam_atan2", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "trained with --optimizer muon" in err and "resume with --optimizer muon" in err


def test_sigkill_then_resume(data, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(T.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "trm.train", *_args(data, run, "--epochs", "3",
                                                                        "--checkpoint_every_steps", "2")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (run / "checkpoints" / "step_2").is_dir():
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    killed_at = _train_lines(run)[-1]["step"] if (run / "metrics.jsonl").exists() else 0
    last_ckpt = _steps(run)[-1]
    assert last_ckpt >= 2 and killed_at >= last_ckpt
    assert T.main(["--resume", str(run), "--progress", "false"]) == 0
    steps = [x["step"] for x in _train_lines(run)]
    assert steps == list(range(1, steps[-1] + 1)), "steps after the checkpoint are redone once, none lost"
    assert _steps(run)[-1] == steps[-1] > killed_at
    meta = json.loads((run / "checkpoints" / f"step_{steps[-1]}" / "meta.json").read_text())
    assert meta["step"] == steps[-1]
    assert not any(p.name.startswith(".") for p in (run / "checkpoints").iterdir()), "no temp dirs left"


def test_partial_checkpoints_are_refused(data, full_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    first, last = _steps(run)[0], _steps(run)[-1]
    assert first < last
    model = run / "checkpoints" / f"step_{last}" / "model.pt"
    with open(model, "r+b") as f:  # a truncated file, as a kill during a non-atomic copy leaves
        f.truncate(model.stat().st_size // 2)
    (run / "checkpoints" / "step_99999").mkdir()  # a bare directory without meta.json
    (run / "checkpoints" / ".step_7.tmp-1234abcd").mkdir()  # what a kill mid-save leaves
    assert find_checkpoint(run) == run / "checkpoints" / f"step_{first}"
    out = capsys.readouterr().out
    assert (f"skipping incomplete checkpoint {run / 'checkpoints' / f'step_{last}'}" in out
            and "truncated" in out)
    assert "step_99999" in out

    with pytest.raises(CheckpointError, match="truncated"):
        find_checkpoint(run / "checkpoints" / f"step_{last}")
    assert T.main(["--resume", str(run / "checkpoints" / f"step_{last}")]) == 3
    assert "truncated or corrupt" in capsys.readouterr().err

    # resuming the run dir continues from the last complete checkpoint and rewrites the bad one
    assert T.main(["--resume", str(run)]) == 0
    assert find_checkpoint(run) == run / "checkpoints" / f"step_{last}"


def test_load_checkpoint_starts_a_new_run(data, full_run, tmp_path, capsys):
    """+load_checkpoint= takes the weights only: a fresh step counter, optimisers and data stream."""
    src = full_run / "checkpoints" / f"step_{_steps(full_run)[-1]}"
    run = tmp_path / "run"
    assert T.main(_args(data, run, "--epochs", "1", f"+load_checkpoint={src}")) == 0
    assert f"initial weights from {src}" in capsys.readouterr().out
    lines = _train_lines(run)
    assert lines[0]["step"] == 1
    # trained weights, not a fresh init
    assert lines[0]["train/loss"] < _train_lines(full_run)[0]["train/loss"]
