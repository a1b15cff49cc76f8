"""What pretraining buys on unseen tasks: the same fine-tune from pretrained weights and from a fresh init.

    .venv/bin/python bench/transfer.py --out runs/transfer --steps 50 100 --seeds 0 1 2
    .venv/bin/python bench/transfer.py --weights runs/transfer/weights --steps 100   # reuse a pretraining

Pretrains the `smoke` preset on trmkit.unseen's pretraining tasks (or takes --weights), then for
every (steps, seed) runs the competition notebook's path (trmkit.unseen.solve_unseen: trm.ttt as
Kaggle's scoring rerun, new mean-initialised puzzle rows) on the unseen tasks twice with the same
budget: from the pretrained weights and from a fresh initialisation of the same architecture
(trmkit.unseen.transfer; the fresh init is seeded with the fine-tune's seed). Prints each arm's
test per-cell accuracy (trmkit.unseen.cell_accuracy) and solved test outputs, and the gap; writes
every figure, the loss curves included, to OUT/transfer.json. One thread per process.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    from trmkit import unseen

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/transfer"))
    ap.add_argument("--weights", type=Path, help="a pretrained slim checkpoint (default: pretrain into OUT)")
    ap.add_argument("--pretrain-epochs", type=int, default=unseen.SIZES["full"]["pretrain_epochs"])
    ap.add_argument("--pretrain-aug", type=int, default=unseen.NUM_AUG)
    ap.add_argument("--pretrain-seed", type=int, default=0)
    ap.add_argument("--steps", type=int, nargs="+", default=[unseen.SIZES["full"]["transfer_steps"]])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a notebook parameter for both arms (trm.ttt.TTTParams), e.g. lr=1e-3")
    a = ap.parse_args()
    pairs = (x.split("=", 1) for x in a.param)
    params = {k: json.loads(v) if v[:1] in "0123456789-[{tf" else v for k, v in pairs}  # numbers, bools
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    weights = a.weights or unseen.pretrain(a.out, epochs=a.pretrain_epochs, num_aug=a.pretrain_aug,
                                           seed=a.pretrain_seed)
    rows = []
    result = {"weights": str(weights), "pretrain_epochs": a.pretrain_epochs, "pretrain_aug": a.pretrain_aug,
              "pretrain_seed": a.pretrain_seed,
              "params": params,
              "pretrain_seconds": round(time.time() - t0, 1), "runs": rows}
    for steps in a.steps:
        for seed in a.seeds:
            r = unseen.transfer(a.out / f"steps{steps}-seed{seed}", weights, steps, seed=seed, **params)
            row = {"steps": steps, "seed": seed, "gap": r["gap"]} | {
                arm: {k: r[arm][k] for k in ("cell_accuracy", "solved", "n_test_outputs", "seconds")}
                | {"losses": r[arm]["finetune"]["losses"]} for arm in ("pretrained", "fresh")}
            rows.append(row)
            print(f"TRANSFER steps {steps} seed {seed}: test per-cell accuracy pretrained "
                  f"{row['pretrained']['cell_accuracy']:.3f} fresh {row['fresh']['cell_accuracy']:.3f} "
                  f"(gap {row['gap']:+.3f}); solved {row['pretrained']['solved']} vs "
                  f"{row['fresh']['solved']} of {row['fresh']['n_test_outputs']}", flush=True)
            (a.out / "transfer.json").write_text(json.dumps(result, indent=1) + "\n")
    result["seconds"] = round(time.time() - t0, 1)
    (a.out / "transfer.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
