"""A tiny real kit checkpoint inside a run directory, for the bundle and publishing tests.

    ckpt = make_run(tmp_path / "runs" / "x", step=5, metrics={"pass@2": 0.25, ...})
    # -> runs/x/checkpoints/step_5 (trm.checkpoint.save_checkpoint), runs/x/{COMMANDS,ENVIRONMENT,
    #    TRM_COMMIT}.txt and, when metrics is given, runs/x/evaluate/step_5/metrics.json shaped as
    #    trm.evaluate writes it (where `make evaluate` puts it: trmkit.notebooks.eval_output_dir)
"""

from __future__ import annotations

import json
from pathlib import Path

TINY = dict(hidden_size=32, num_heads=2, n_layers=1, n_outer_cycles=1, n_latent_steps=1, halt_max_steps=2,
            puzzle_emb_ndim=32, num_puzzle_identifiers=6, forward_dtype="float32")


def make_run(run: Path, step: int = 5, metrics: dict | None = None) -> Path:
    import torch

    from trm.checkpoint import save_checkpoint
    from trm.model import TRM, ModelConfig

    torch.manual_seed(0)
    ckpt = save_checkpoint(run / "checkpoints" / f"step_{step}", TRM(ModelConfig(**TINY)),
                           meta={"step": step})
    (run / "COMMANDS.txt").write_text("python -m trm.train --preset smoke\n")
    (run / "ENVIRONMENT.txt").write_text("Python 3.11\ntorch 2.13.0+cpu\n")
    (run / "TRM_COMMIT.txt").write_text("kit git sha: 0123456789abcdef\n")
    if metrics is not None:
        out = run / "evaluate" / ckpt.name
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps({"checkpoint": str(ckpt), "step": step,
                                                      "n_checkpoints": 1, **metrics}, indent=1))
    return ckpt


def write_all_config(d: Path, arch: dict) -> Path:
    """Upstream's all_config.yaml for `arch` (upstream names, e.g. golden/model/config.json's): the
    `arch:` mapping without the fields pretrain.py injects from the dataset, plus top-level keys."""
    import yaml

    injected = ("vocab_size", "seq_len", "num_puzzle_identifiers", "batch_size")
    body = {"arch": {**{k: v for k, v in arch.items() if k not in injected},
                     "loss": {"name": "losses@ACTLossHead", "loss_type": "stablemax_cross_entropy"},
                     "name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"},
            "data_paths": ["data/arc2concept-aug-1000"], "lr": 0.0001, "ema": True}
    d.mkdir(parents=True, exist_ok=True)
    (d / "all_config.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return d / "all_config.yaml"


def upstream_run(step_file: Path, arch: dict, d: Path, steps=(10, 20)) -> Path:
    """An upstream run's folder as published: `step_file` (an upstream state_dict) copied as each
    step_N, with all_config.yaml beside them (what NVARC's Kaggle dataset or a Hub folder holds)."""
    import shutil

    write_all_config(d, arch)
    for n in steps:
        shutil.copyfile(step_file, d / f"step_{n}")
    return d
