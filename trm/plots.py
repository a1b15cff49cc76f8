"""Pictures: ARC grids of one test input (input, both attempts, truth) and training curves.

matplotlib is a tooling extra (`pip install trm-kaggle-kit[kit]`), not a runtime dependency,
so it is imported inside the functions (Agg backend, no display needed); callers that
must not fail without it catch ImportError.

    from trm.plots import plot_test_input, plot_training_curves
    plot_training_curves("runs/x/metrics.jsonl", "runs/x/curves.png")
"""

from __future__ import annotations

import json
import math
from pathlib import Path

# The usual ARC palette, colours 0-9.
ARC_COLOURS = ("#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
               "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_png) -> Path:
    """Save next to the target then rename, so a reader never sees a half-written PNG."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    tmp.replace(out)
    return out


def draw_grid(ax, grid, title: str = "") -> None:
    """One ARC grid on a matplotlib axis; an empty/None grid shows as a blank panel."""
    from matplotlib.colors import ListedColormap

    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    if not grid or not grid[0]:
        ax.text(0.5, 0.5, "(none)", ha="center", va="center", transform=ax.transAxes)
        return
    h, w = len(grid), len(grid[0])
    ax.imshow(grid, cmap=ListedColormap(ARC_COLOURS), vmin=0, vmax=9, interpolation="nearest")
    ax.set_xticks([x - 0.5 for x in range(1, w)], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, h)], minor=True)
    ax.grid(which="minor", color="#555555", linewidth=0.5)
    ax.tick_params(which="minor", length=0)


def plot_test_input(out_png, test_input, attempts, truth=None, *, title: str = "", captions=None) -> Path:
    """input | attempt 1 | attempt 2 | truth (when known), one row of panels."""
    plt = _plt()
    captions = captions or ["attempt 1", "attempt 2"]
    panels = [(test_input, "test input"), (attempts[0], captions[0]), (attempts[1], captions[1])]
    if truth is not None:
        panels.append((truth, "truth"))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3))
    for ax, (g, cap) in zip(axes, panels):
        draw_grid(ax, g, cap)
    if title:
        fig.suptitle(title, fontsize=10)
    try:
        return _save(fig, out_png)
    finally:
        plt.close(fig)


# Default panel order: solve rates first (the numbers that matter), then the losses and per-cell
# accuracies, then the schedule and speed. Bookkeeping keys are never drawn by default.
CURVE_PRIORITY = ("eval/pass@2", "eval/kaggle_score", "eval/pass@1", "train/loss", "train/lm_loss",
                  "train/q_halt_loss", "train/accuracy", "train/exact_accuracy", "train/q_halt_accuracy",
                  "train/steps", "train/lr", "s_per_step")
CURVE_SKIP = frozenset({"step", "iteration", "train/count", "train/puzzle_emb_lr", "eval/kaggle_correct",
                        "eval/kaggle_scored_outputs", "eval/n_tasks", "eval/n_test_outputs", "eval/step"})


def curve_keys(records: list[dict]) -> list[str]:
    """The numeric keys of `records` in panel order: CURVE_PRIORITY's first, then the rest in
    first-seen order, CURVE_SKIP left out."""
    seen: list[str] = []
    for rec in records:
        for k, v in rec.items():
            if (k not in CURVE_SKIP and k not in seen and isinstance(v, int | float)
                    and not isinstance(v, bool)):
                seen.append(k)
    return [k for k in CURVE_PRIORITY if k in seen] + [k for k in seen if k not in CURVE_PRIORITY]


def plot_training_curves(metrics_jsonl, out_png, keys=None, max_panels: int = 12) -> Path:
    """One panel per numeric metric in a JSON-lines log, against `step` (else line number).

    keys: metrics to draw (default: curve_keys, i.e. solve rates first, then losses, ...), at most
    max_panels. Non-finite values and lines that are not JSON objects are skipped.
    """
    records = []
    for line in Path(metrics_jsonl).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    keys = list(curve_keys(records) if keys is None else keys)[:max_panels]
    plt = _plt()
    n = max(len(keys), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(rec.get("step", i), rec[key]) for i, rec in enumerate(records)
               if isinstance(rec.get(key), int | float) and math.isfinite(rec[key])]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="." if len(pts) < 50 else None, linewidth=1)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if not keys:
        axes.flat[0].text(0.5, 0.5, "no numeric metrics", ha="center", va="center")
    fig.tight_layout()
    try:
        return _save(fig, out_png)
    finally:
        plt.close(fig)
