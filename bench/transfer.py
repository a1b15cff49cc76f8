"""What pretraining buys on unseen tasks: the same fine-tune from pretrained weights and from a fresh init.

    .venv/bin/python bench/transfer.py --out runs/transfer --steps 50 100 --seeds 0 1 2
    .venv/bin/python bench/transfer.py --weights runs/transfer/weights --steps 100   # reuse a pretraining

Pretrains the `smoke` preset on trmkit.unseen's pretraining tasks (or takes --weights), then for
every (steps, seed) runs the competition notebook's path (trmkit.unseen.solve_unseen: trm.ttt as
Kaggle's scoring rerun, new mean-initialised puzzle rows) on the unseen tasks twice with the same
budget: from the pretrained weights and from a fresh initialisation of the same architecture
(trmkit.unseen.fresh_weights, seeded with the fine-tune's seed). Prints per-cell test accuracy
(attempt 1), solved test outputs and the last training loss of each arm, and the gap; writes
every figure to OUT/transfer.json. One thread per process (OMP_NUM_THREADS=1).
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
    ap.add_argument("--steps", type=int, nargs="+", default=[unseen.SIZES["full"]["max_steps"]])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a notebook parameter for both arms (trm.ttt.TTTParams), e.g. lr=1e-3")
    a = ap.parse_args()
    params = {k: json.loads(v) if v[:1] in "0123456789-[{tf" else v for k, v in (x.split("=", 1) for x in a.param)}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    weights = a.weights or unseen.pretrain(a.out, epochs=a.pretrain_epochs, num_aug=a.pretrain_aug)
    rows = []
    result = {"weights": str(weights), "pretrain_epochs": a.pretrain_epochs, "pretrain_aug": a.pretrain_aug,
              "params": params,
              "pretrain_seconds": round(time.time() - t0, 1), "runs": rows}
    for steps in a.steps:
        for seed in a.seeds:
            fresh = unseen.fresh_weights(a.out / f"fresh-{seed}", like=weights, seed=seed)
            row = {"steps": steps, "seed": seed}
            for arm, w in (("pretrained", weights), ("fresh", fresh)):
                r = unseen.solve_unseen(a.out / f"{arm}-s{steps}-seed{seed}", w, max_steps=steps, seed=seed, **params)
                row[arm] = {k: r[k] for k in ("cell_accuracy", "solved", "n_test_outputs", "seconds")} | {
                    "losses": r["finetune"]["losses"]}
            row["gap"] = round(row["pretrained"]["cell_accuracy"] - row["fresh"]["cell_accuracy"], 4)
            rows.append(row)
            print(f"TRANSFER steps {steps} seed {seed}: cell accuracy pretrained {row['pretrained']['cell_accuracy']:.3f} "
                  f"fresh {row['fresh']['cell_accuracy']:.3f} (gap {row['gap']:+.3f}); solved "
                  f"{row['pretrained']['solved']} vs {row['fresh']['solved']} of {row['fresh']['n_test_outputs']}; "
                  f"losses {row['pretrained']['losses']} vs {row['fresh']['losses']}", flush=True)
            (a.out / "transfer.json").write_text(json.dumps(result, indent=1) + "\n")
    result["seconds"] = round(time.time() - t0, 1)
    (a.out / "transfer.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
