"""A training run's records: metrics.jsonl (appended; cut back on resume), Weights & Biases when
asked for and installed, the curves PNG, and the progress line printed without a progress bar."""

from __future__ import annotations

import json
from pathlib import Path

from trm import distributed as D
from trm.config import TrainConfig, config_to_dict


class Wandb:
    """wandb when asked for and importable, else a no-op with a one-line note."""

    def __init__(self, cfg: TrainConfig, ctx: D.DistContext):
        self.run = None
        if not (cfg.wandb and ctx.is_main):
            return
        try:
            import wandb
        except ImportError:
            print("wandb: --wandb was given but the `wandb` package is not installed; "
                  "logging to metrics.jsonl only (pip install wandb to enable)")
            return
        self.run = wandb.init(project=cfg.project_name, name=cfg.run_name, config=config_to_dict(cfg),
                              dir=cfg.run_dir, resume="allow")

    def log(self, rec: dict) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in rec.items() if k != "step"}, step=rec["step"])

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def append_jsonl(path: Path, rec: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """On resume: drop lines logged after the checkpoint's step (those steps are redone)."""
    if not path.is_file():
        return
    keep = []
    for ln in path.read_text().splitlines():
        try:
            if json.loads(ln).get("step", 0) <= step:
                keep.append(ln)
        except (json.JSONDecodeError, AttributeError):
            continue  # e.g. a line cut short by a kill
    path.write_text("".join(ln + "\n" for ln in keep))


def plot(run_dir: Path) -> None:
    try:
        from trm.plots import plot_training_curves

        plot_training_curves(run_dir / "metrics.jsonl", run_dir / "curves.png")
    except ImportError:
        print("curves.png skipped: matplotlib is not installed")


def progress_line(rec: dict, total_steps: int) -> str:
    """One metrics line, e.g. `step 40/566 | loss 1.2345 | accuracy (per cell) 0.612 | exact 0.000 |
    lr 5.00e-03 | s/step 1.31`; accuracies only when some sequence halted since the last line."""
    parts = [f"step {rec.get('step')}/{total_steps}"]
    if not rec.get("train/count"):
        rec = {k: v for k, v in rec.items() if "accuracy" not in k}
    for key, label, fmt in (("train/loss", "loss", ".4f"), ("train/accuracy", "accuracy (per cell)", ".3f"),
                            ("train/exact_accuracy", "exact", ".3f"), ("train/lr", "lr", ".2e"),
                            ("s_per_step", "s/step", ".2f")):
        if isinstance(rec.get(key), int | float):
            parts.append(f"{label} {rec[key]:{fmt}}")
    return " | ".join(parts)
