"""End-to-end: the `smoke` preset learns a few simple ARC tasks. Run: pytest -m slow tests/test_learns.py

Builds a dataset with `python -m dataset_builder` from ARC-AGI-1 training tasks whose rule is a
per-cell recolouring (so a tiny CPU model can learn them in minutes), with those tasks as the
test set (their demo pairs are trained on, their test pairs are held out, as upstream does
with evaluation tasks). It then trains the `smoke` preset (made cheaper, see OVERRIDES) with
an evaluation by trm.evaluate every 40 epochs: voting over the augmented versions must solve
>= 90 % of the held-out test outputs (pass@2 and the Kaggle score) at some evaluation of the
run, and the reloaded final checkpoint must score exactly as its in-run evaluation did. This exercises the model, loss, both optimisers, the sampler,
ACT carries, checkpoints and the evaluator together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import trm.train as T
from trm.checkpoint import load_checkpoint
from trm.config import resolve_config
from trm.evaluate import evaluate_model

# b1948b0a 6->2 | c8f0f002 7->5 | d511f180 5<->8 | 0d3d703e an 8-colour map; every test colour
# appears in the task's demos
TASKS = ["b1948b0a", "c8f0f002", "d511f180", "0d3d703e"]
NUM_AUG = 8
# The smoke preset made cheaper for CI: one block, T=1, n=2, two supervision steps; a higher lr and
# puzzle-embedding lr so the per-puzzle colour maps are learned in a few hundred steps. An eval
# every 40 epochs (~31 steps); the best eval must reach the threshold.
OVERRIDES = ["--num_threads", "1", "--progress", "false", "--checkpoint_every_eval", "false",
             "--arch.n_layers", "1", "--arch.n_outer_cycles", "1", "--arch.n_latent_steps", "2",
             "--arch.halt_max_steps", "2", "--lr", "5e-3", "--puzzle_emb_lr", "0.1",
             "--global_batch_size", "16", "--epochs", "600", "--eval_interval", "40", "--log_interval", "10",
             "--device", os.environ.get("TRM_TEST_DEVICE", "cpu")]


@pytest.mark.slow
def test_smoke_preset_learns_simple_tasks(arc_data, tmp_path):
    t0 = time.time()
    data = tmp_path / "data"
    build = subprocess.run([sys.executable, "-m", "dataset_builder", "--input-file-prefix",
                            str(arc_data / "arc-agi" / "arc-agi"), "--subsets", "training", "--test-set-name",
                            "training", "--task-ids", *TASKS, "--num-aug", str(NUM_AUG), "--output-dir", str(data),
                            "--quiet"], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    cfg = resolve_config("smoke", ["--data_path", str(data), "--run_dir", str(tmp_path / "run"), *OVERRIDES])
    run = T.train(cfg)
    ckpt = T.find_checkpoint(run)
    model, meta = load_checkpoint(ckpt, dataset_dir=data)
    m = evaluate_model(model, data, tmp_path / "eval", global_batch_size=64, step=meta["step"], n_pictures=0)
    wall = time.time() - t0
    summary = {"pass@1": m["pass@1"], "pass@2": m["pass@2"], "kaggle_score": m["kaggle_score"],
               "exact_row_accuracy": m["exact_row_accuracy"], "step": meta["step"], "wall_s": round(wall, 1)}
    in_run = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in in_run if "eval/pass@2" in r]
    summary["best_in_run_pass@2"] = max(r["eval/pass@2"] for r in evals)
    summary["in_run_pass@2"] = [r["eval/pass@2"] for r in evals]
    print("learning test:", json.dumps(summary))
    assert evals[-1]["eval/pass@2"] == m["pass@2"], "the reloaded checkpoint scores as in training"
    best = max(evals, key=lambda r: r["eval/pass@2"])
    assert best["eval/pass@2"] >= 0.9 and best["eval/kaggle_score"] >= 0.9, summary
