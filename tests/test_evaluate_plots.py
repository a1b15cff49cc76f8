"""trm.plots: task pictures and training curves (matplotlib: in the lock and the kit's tooling extra).

    .venv/bin/pytest -q tests/test_evaluate_plots.py
"""

from __future__ import annotations

import json

from trm.plots import curve_keys, plot_test_input, plot_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_test_input(tmp_path):
    out = plot_test_input(tmp_path / "p" / "t.png", [[1, 2], [3, 4]], ([[4, 3], [2, 1]], [[0]]),
                          truth=[[4, 3], [2, 1]], title="t", captions=["a", "b"])
    assert out.read_bytes().startswith(PNG_MAGIC)
    # no truth, and an empty attempt, still draw
    out = plot_test_input(tmp_path / "u.png", [[1]], ([], [[5] * 30] * 30))
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert sorted(f.name for f in tmp_path.rglob("*") if f.is_file()) == ["t.png", "u.png"]


def test_plot_training_curves(tmp_path):
    log = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "train/lm_loss": 3.0 / s, "lr": 1e-4 * s, "note": "x", "flag": True})
             for s in range(1, 20)]
    lines += ["", "not json", json.dumps({"step": 20, "eval/pass@2": 0.1, "train/lm_loss": float("nan")})]
    log.write_text("\n".join(lines))
    out = plot_training_curves(log, tmp_path / "curves.png")
    assert out.read_bytes().startswith(PNG_MAGIC)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert plot_training_curves(empty, tmp_path / "e.png").read_bytes().startswith(PNG_MAGIC)


def test_curve_keys_put_solve_rates_first():
    """A real run logs 12 train keys before the first eval line: the eval solve rates must still
    get panels (they came after max_panels in first-seen order once), bookkeeping keys none."""
    train = {k: 0.5 for k in ("train/accuracy", "train/count", "train/exact_accuracy", "train/lm_loss",
                              "train/loss", "train/q_halt_accuracy", "train/q_halt_loss", "train/steps",
                              "train/lr", "train/puzzle_emb_lr", "s_per_step")}
    records = [{**train, "step": 10, "iteration": 0},
               {"step": 10, "eval/pass@1": 0.1, "eval/pass@2": 0.2, "eval/pass@5": 0.3,
                "eval/kaggle_score": 0.2, "eval/kaggle_correct": 3, "eval/n_tasks": 4,
                "eval/token_accuracy": 0.9}]
    keys = curve_keys(records)
    assert keys[:3] == ["eval/pass@2", "eval/kaggle_score", "eval/pass@1"]
    assert not {"step", "iteration", "train/count", "train/puzzle_emb_lr", "eval/n_tasks"} & set(keys)
    assert {"train/loss", "eval/pass@5", "eval/token_accuracy"} <= set(keys) and len(keys) == len(set(keys))
