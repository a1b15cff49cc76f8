"""trm.evaluate with a real (tiny, random-init) model: predict, early exit, the CLI, torchrun.

    .venv/bin/pytest -q tests/test_evaluate_model.py

Uses the golden built dataset (sizes read from it and from build_command.json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from trm.checkpoint import save_checkpoint
from trm.data import load_split
from trm.evaluate import predict
from trm.model import TRM, ModelConfig, TRMWithLoss
from trm.submission import check_submission, score_submission


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls: one thread is faster, and much faster on a shared, loaded machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data(golden_build):
    return golden_build.output


def tiny(data, halt_max_steps: int = 3, seed: int = 0, q_std: float = 0.0,
         q_bias: float | None = None) -> TRM:
    """A tiny random TRM whose puzzle table fits the dataset at `data`."""
    torch.manual_seed(seed)
    rows = load_split(data, "train").meta["num_puzzle_identifiers"]
    m = TRM(ModelConfig(hidden_size=32, num_heads=2, n_layers=1, n_outer_cycles=1, n_latent_steps=1,
                        halt_max_steps=halt_max_steps, puzzle_emb_ndim=32, num_puzzle_identifiers=rows,
                        forward_dtype="float32"))
    with torch.no_grad():
        m.puzzle_emb.weights[1:].normal_(0, 1.0)  # make rows differ, so q_halt varies per row
        if q_std:
            m.q_head.weight.normal_(0, q_std)
        if q_bias is not None:
            m.q_head.bias.fill_(q_bias)
    return m.eval()


def test_predict_shapes_and_counts(data):
    model = tiny(data, halt_max_steps=2)
    p = predict(model, data, global_batch_size=16)
    split = load_split(data, "test")
    n = split.num_examples
    assert len(p) == n and p.preds.shape == (n, 900) and p.preds.dtype == np.uint8
    assert np.array_equal(p.rows, np.arange(n))
    assert np.array_equal(p.puzzle_ids, split.example_puzzle_ids())
    assert (p.steps == 2).all()
    labels = np.asarray(split.labels)
    assert np.array_equal(p.n_label, (labels != 0).sum(1))
    assert model.training is False
    # a TRMWithLoss wrapper is accepted, and the batch size does not change the answer
    p2 = predict(TRMWithLoss(model), data, global_batch_size=7, limit_rows=14)
    assert np.array_equal(p.preds[:14], p2.preds)
    np.testing.assert_allclose(p.q_halt[:14], p2.q_halt, atol=1e-5)


def test_early_exit_never_triggers_at_random_init(data):
    """q_head starts at bias -5: no row halts early, so early exit equals the default run."""
    model = tiny(data)
    a = predict(model, data, global_batch_size=4, limit_rows=12)
    b = predict(model, data, global_batch_size=4, limit_rows=12, early_exit=True)
    assert (b.steps == 3).all() and (a.q_halt < 0).all()
    assert np.array_equal(a.preds, b.preds)


def test_early_exit_refills_slots_and_matches_per_row_runs(data):
    """With a q head that halts rows at different steps, every row's early-exit prediction is
    the default-mode prediction of a model limited to that many steps."""
    model = tiny(data, halt_max_steps=3, q_std=0.5, q_bias=0.0)
    n = min(20, load_split(data, "test").num_examples)  # batches' worth through 4 slots: refilled many times
    ee = predict(model, data, global_batch_size=4, early_exit=True, limit_rows=n)
    assert np.array_equal(ee.rows, np.arange(n))
    counts = np.bincount(ee.steps, minlength=4)
    assert 0 < counts[1] < n and counts[3] > 0  # rows stop at different steps
    for k in range(1, 4):
        model.config.halt_max_steps = k
        full = predict(model, data, global_batch_size=4, limit_rows=n)
        rows = ee.steps == k
        if k < 3:
            assert (ee.q_halt[rows] > 0).all()
        assert np.array_equal(ee.preds[rows], full.preds[rows]), k
        np.testing.assert_allclose(ee.q_halt[rows], full.q_halt[rows], atol=1e-5)
    model.config.halt_max_steps = 3


def test_limit_rows(data):
    p = predict(tiny(data), data, global_batch_size=4, limit_rows=5)
    assert np.array_equal(p.rows, np.arange(5))


@pytest.fixture(scope="module")
def ckpt(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "step_7"
    save_checkpoint(path, tiny(data, halt_max_steps=2, q_std=0.5, q_bias=0.0), meta={"step": 7},
                    dataset_dir=data)
    return path


def _run(args: list[str], repo_root, nproc: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, "-m", "trm.evaluate", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-port", str(29400 + os.getpid() % 500), "-m", "trm.evaluate", *args]
    r = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def one_process(ckpt, data, tmp_path_factory, repo_root):
    """`python -m trm.evaluate` on the checkpoint: (output dir, stdout)."""
    out = tmp_path_factory.mktemp("eval") / "one"
    r = _run(["--checkpoint", str(ckpt), "--data", str(data), "--output-dir", str(out), "--batch-size", "16",
              "--device", "cpu", "--pictures", "2"], repo_root)
    return out, r.stdout


def test_cli_end_to_end(one_process, ckpt, data, golden_build, repo_root):
    out, stdout = one_process
    lines = stdout.splitlines()
    first = next(i for i, s in enumerate(lines) if s.startswith("pass@1 "))
    acc = next(i for i, s in enumerate(lines) if "token accuracy (per-cell, NOT a solve rate)" in s)
    assert first < acc  # solve rates are printed before token accuracy
    for name in ("submission.json", "metrics.json", "per_task.csv"):
        assert (out / name).is_file()
    # matplotlib is in the lock: a missing one fails here
    assert len(list((out / "pictures").glob("*.png"))) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 7 and metrics["checkpoint"] == str(ckpt)
    assert metrics["n_rows"] == load_split(data, "test").num_examples and metrics["mean_steps"] == 2.0
    tp = json.loads((data / "test_puzzles.json").read_text())
    challenges = {t: {"test": [{"input": p["input"]} for p in v["test"]]} for t, v in tp.items()}
    sub = json.loads((out / "submission.json").read_text())
    assert check_submission(sub, challenges) == ([], [])
    r = subprocess.run([sys.executable, "-m", "trm.submission", "validate", str(out / "submission.json"),
                        "--challenges", str(golden_build.input_file(golden_build.test_set))],
                       cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.slow
def test_cli_torchrun_matches_one_process(one_process, ckpt, data, tmp_path, repo_root):
    """Two processes (torchrun, gloo on CPU): the same submission and row metrics as one process."""
    out, _ = one_process
    out2 = tmp_path / "two"
    _run(["--checkpoint", str(ckpt), "--data", str(data), "--output-dir", str(out2), "--batch-size", "16",
          "--device", "cpu", "--pictures", "0"], repo_root, nproc=2)
    assert (json.loads((out2 / "submission.json").read_text())
            == json.loads((out / "submission.json").read_text()))
    m1, m2 = (json.loads((o / "metrics.json").read_text()) for o in (out, out2))
    keys = ("n_rows", "token_accuracy", "exact_row_accuracy")
    assert {k: m2[k] for k in keys} == {k: m1[k] for k in keys}


def test_cli_early_exit_ensemble_and_external_files(ckpt, data, golden_build, tmp_path, repo_root):
    chal_file, sol_file = (golden_build.input_file(golden_build.test_set, k)
                           for k in ("challenges", "solutions"))
    out = tmp_path / "ens"
    _run(["--checkpoint", str(ckpt), "--ensemble", str(ckpt), "--data", str(data), "--output-dir", str(out),
          "--batch-size", "8", "--device", "cpu", "--early-exit", "--pictures", "0",
          "--challenges", str(chal_file), "--solutions", str(sol_file)], repo_root)
    metrics = json.loads((out / "metrics.json").read_text())
    n_rows = load_split(data, "test").num_examples
    assert metrics["n_checkpoints"] == 2 and metrics["n_rows"] == 2 * n_rows and metrics["step"] is None
    assert metrics["mean_steps"] < 2.0  # some rows exited after one step
    challenges = json.loads(chal_file.read_text())
    sub = json.loads((out / "submission.json").read_text())
    assert check_submission(sub, challenges)[0] == []
    solutions = json.loads(sol_file.read_text())
    assert metrics["kaggle_score"] == score_submission(sub, solutions)["score"]

