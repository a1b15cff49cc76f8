"""Benchmark `python -m dataset_builder` on the upstream ARC-AGI-2 + ConceptARC recipe.

    python bench/build_dataset.py --num-aug 100        # ~1 GB written to a temp dir
    python bench/build_dataset.py --num-aug 1000       # the paper's dataset, ~9.6 GB

Runs the build in a child process (so import time counts, as for a user) into a
temporary directory that is removed afterwards unless --keep. The LAST line printed is
the result: wall seconds, the child's peak RSS (getrusage RUSAGE_CHILDREN, MB) and
examples per second (train + test rows written). For comparison, upstream's builder
took 44.9 s / 2.4 GB at num_aug 100 on a 2-core machine (docs/fidelity.md#cpu-baselines).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from data_paths import require, upstream_prefix  # bench/, the script's folder

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-aug", type=int, default=100)
    ap.add_argument("--input-prefix", type=Path, default=upstream_prefix(),
                    help="upstream-layout prefix (default: the shared copy, else `make data`'s)")
    ap.add_argument("--subsets", nargs="+", default=["training2", "evaluation2", "concept"])
    ap.add_argument("--test-set-name", default="evaluation2")
    ap.add_argument("--tmp-dir", default=None, help="where the temporary output goes (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep the built dataset (its path is printed)")
    args = ap.parse_args()
    require(args.input_prefix.parent, "run `make data` (upstream's ARC JSON into data/raw/) or pass "
            "--input-prefix")

    work = Path(tempfile.mkdtemp(prefix="trm-bench-build-", dir=args.tmp_dir))
    out = work / f"arc-aug-{args.num_aug}"
    cmd = [sys.executable, "-m", "dataset_builder", "--input-file-prefix", str(args.input_prefix),
           "--output-dir", str(out), "--subsets", *args.subsets, "--test-set-name", args.test_set_name,
           "--num-aug", str(args.num_aug), "--quiet"]
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"build failed with exit code {proc.returncode}", file=sys.stderr)
            return proc.returncode
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        rss_mb = usage.ru_maxrss / 1024  # Linux reports KiB
        examples = 0
        for split in ("train", "test"):
            meta = out / split / "dataset.json"
            if meta.is_file():
                m = json.loads(meta.read_text())
                examples += round(m["mean_puzzle_examples"] * m["total_puzzles"])
        ids = len(json.loads((out / "identifiers.json").read_text()))
        disk = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"ids {ids:,}; {examples:,} examples; {disk / 1e9:.2f} GB on disk; "
              f"cpu user {usage.ru_utime:.1f} s sys {usage.ru_stime:.1f} s"
              + (f"; kept {out}" if args.keep else ""))
        print(f"build_dataset num_aug={args.num_aug}: wall {wall:.1f} s, peak RSS {rss_mb:.0f} MB, "
              f"{examples / wall:,.0f} examples/s")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
