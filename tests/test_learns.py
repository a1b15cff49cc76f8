"""End-to-end: the `smoke` preset learns a few simple ARC tasks. Run: pytest -m slow tests/test_learns.py

Builds a dataset with `python -m dataset_builder` from the ARC-AGI-1 training tasks whose rule is
a per-cell recolouring (the only such tasks in ARC; a tiny CPU model learns them in minutes), with
those tasks as the test set: their demo pairs are trained on and their test pairs held out, as
upstream does with evaluation tasks. It trains the `smoke` preset unchanged (720 epochs = 566
steps of 16 rows, an eval by trm.evaluate every 80 epochs), reloads the final checkpoint (EMA
weights + live puzzle table) and scores the held-out test outputs: voting over the 9 augmented
versions of each must solve >= 90 % of them (pass@2 and the Kaggle score), and the reloaded
checkpoint must score exactly as its in-run evaluation did. This exercises the model, loss, both
optimisers, the LR schedule, EMA, the sampler, ACT carries, checkpoints and the evaluator together.
Measured: every eval from step 377 on scores 1.0. TRM_TEST_DEVICE=cuda runs it on a GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import trm.train as T
from trm.checkpoint import find_checkpoint, load_checkpoint
from trm.config import resolve_config
from trm.evaluate import evaluate_model


def recolouring_tasks(prefix: Path) -> list[str]:
    """The ARC-AGI-1 training tasks whose rule is a per-cell recolouring: every pair, demos and tests,
    keeps its shape and maps each colour to one colour, the same map throughout, not the identity;
    and every colour of the test inputs appears in the demos (learnable). Simplest map first (fewest
    colours changed, then file order): the order the builder is given is the order it shuffles."""
    challenges = json.loads(Path(f"{prefix}_training_challenges.json").read_text())
    solutions = json.loads(Path(f"{prefix}_training_solutions.json").read_text())
    chosen = []
    for tid, task in challenges.items():
        pairs = [(e["input"], e["output"]) for e in task["train"]]
        pairs += [(e["input"], out) for e, out in zip(task["test"], solutions[tid])]
        colour_map: dict[int, int] = {}
        cellwise = all(len(a) == len(b) and all(len(r) == len(q) for r, q in zip(a, b)) for a, b in pairs)
        consistent = cellwise and all(colour_map.setdefault(x, y) == y
                                      for a, b in pairs for r, q in zip(a, b) for x, y in zip(r, q))
        demo_colours = {x for e in task["train"] for row in e["input"] for x in row}
        test_colours = {x for e in task["test"] for row in e["input"] for x in row}
        changed = sum(x != y for x, y in colour_map.items())
        if consistent and changed and test_colours <= demo_colours:
            chosen.append((changed, len(chosen), tid))
    return [tid for *_, tid in sorted(chosen)]


NUM_AUG = 8  # 9 versions per task: each test output is voted over 9 augmented rows
# one thread: on a shared 2-core machine two OpenMP threads per process are several times slower
OVERRIDES = ["--num_threads", "1", "--progress", "false",
             "--device", os.environ.get("TRM_TEST_DEVICE", "cpu")]


@pytest.mark.slow
def test_smoke_preset_learns_simple_tasks(arc_data, tmp_path):
    t0 = time.time()
    tasks = recolouring_tasks(arc_data / "arc-agi" / "arc-agi")
    assert tasks, "no per-cell recolouring task in the ARC-AGI-1 training file"
    data = tmp_path / "data"
    build = subprocess.run([sys.executable, "-m", "dataset_builder", "--input-file-prefix",
                            str(arc_data / "arc-agi" / "arc-agi"), "--subsets", "training", "--test-set-name",
                            "training", "--task-ids", *tasks, "--num-aug", str(NUM_AUG),
                            "--output-dir", str(data), "--quiet"],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    cfg = resolve_config("smoke", ["--data_path", str(data), "--run_dir", str(tmp_path / "run"), *OVERRIDES])
    run = T.train(cfg)
    ckpt = find_checkpoint(run)
    model, meta = load_checkpoint(ckpt, dataset_dir=data, map_location=cfg.device)
    m = evaluate_model(model, data, tmp_path / "eval", global_batch_size=cfg.global_batch_size,
                       step=meta["step"], n_pictures=0)
    evals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if "eval/pass@2" in r]
    summary = {"tasks": tasks, "pass@1": m["pass@1"], "pass@2": m["pass@2"],
               "kaggle_score": m["kaggle_score"],
               "exact_row_accuracy": m["exact_row_accuracy"], "step": meta["step"],
               "in_run_pass@2": [(r["step"], r["eval/pass@2"]) for r in evals],
               "wall_s": round(time.time() - t0, 1)}
    print("learning test:", json.dumps(summary))
    assert evals[-1]["step"] == meta["step"] and evals[-1]["eval/pass@2"] == m["pass@2"], \
        "the reloaded checkpoint scores as its in-run evaluation"
    assert m["pass@2"] >= 0.9 and m["kaggle_score"] >= 0.9, summary
