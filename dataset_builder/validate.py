"""Input validation: ARC task JSON -> uint8 grids, or one clear BuildError line.

Upstream asserts (2-D, <= 30x30, values 0-9) and otherwise crashes with a traceback
somewhere later. Here every malformed input is reported before anything is written,
naming the file, the task and the example, e.g.

    x_challenges.json: task 'abc' train[2].input: row 3 has 4 cells, expected 5 (grid must be rectangular)

Indices (train[i], row r, col c) are 0-based, as in the JSON arrays.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from trm.errors import UserError
from trm.grids import AUG_SEP, GRID_MAX, NUM_COLORS


class BuildError(UserError):
    """Bad input or refused output: the CLI prints `error: <message>` and exits 2."""


def read_json(path: str | Path, what: str = "file", with_raw: bool = False) -> Any:
    """json.load with one-line errors naming the file (and the raw bytes if with_raw)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BuildError(f"{path}: no such {what}") from None
    except OSError as e:
        raise BuildError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        parsed = json.loads(data)
        return (parsed, data) if with_raw else parsed
    except UnicodeDecodeError as e:
        raise BuildError(f"{path}: not valid JSON (not UTF-8: {e.reason})") from None
    except json.JSONDecodeError as e:
        raise BuildError(f"{path}: not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


_BOOL_WORDS = re.compile(rb"true|false")
_KINDS = {bool: "a boolean", float: "a float", str: "a string", list: "a list", dict: "an object"}


def may_hold_bools(raw: bytes | str) -> bool:
    """False when JSON text cannot contain a boolean (so numpy may check grid types).

    np.array silently turns [1, true] into integers; only texts without the words
    true/false (anywhere, task ids included: a false alarm merely costs speed) may use
    check_grid's fast path.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    return _BOOL_WORDS.search(raw) is not None


def check_grid(grid: Any, where: str, fast: bool = False) -> np.ndarray:
    """A JSON grid (list of equal-length lists of ints 0-9, 1..30 per side) -> uint8 [h, w].

    fast=True (only for data that holds no booleans, see may_hold_bools) lets numpy do the
    checks; anything it does not accept goes through the cell-by-cell path below, which
    produces the error message.
    """
    if fast:
        try:
            arr = np.array(grid)
        except (ValueError, TypeError, OverflowError):
            arr = None
        if (arr is not None and arr.ndim == 2 and arr.dtype.kind in "iu" and 0 < arr.shape[0] <= GRID_MAX
                and 0 < arr.shape[1] <= GRID_MAX and arr.min() >= 0 and arr.max() < NUM_COLORS):
            return arr.astype(np.uint8)
    if not isinstance(grid, list):
        raise BuildError(f"{where}: expected a grid (list of rows), got {type(grid).__name__}")
    if not grid:
        raise BuildError(f"{where}: grid is empty (0 rows)")
    width = None
    for r, row in enumerate(grid):
        if not isinstance(row, list):
            raise BuildError(f"{where}: row {r} is {type(row).__name__}, expected a list of cells")
        if width is None:
            width = len(row)
            if width == 0:
                raise BuildError(f"{where}: grid is empty (row 0 has 0 cells)")
        elif len(row) != width:
            raise BuildError(
                f"{where}: row {r} has {len(row)} cells, expected {width} (grid must be rectangular)"
            )
        # `type(v) is int` rejects bools (a subclass of int) and floats such as 1.0.
        if not all(type(v) is int for v in row):
            c, v = next((c, v) for c, v in enumerate(row) if type(v) is not int)
            kind = _KINDS.get(type(v), type(v).__name__)
            shown = json.dumps(v) if isinstance(v, (bool, float, str, type(None))) else repr(v)
            what = f"{shown} is {kind}" if v is not None else shown
            raise BuildError(f"{where}: row {r} col {c}: {what}, not an integer colour 0-9")
        if min(row) < 0 or max(row) >= NUM_COLORS:
            c, v = next((c, v) for c, v in enumerate(row) if not 0 <= v < NUM_COLORS)
            raise BuildError(f"{where}: row {r} col {c}: value {v} outside 0-9")
    h = len(grid)
    if h > GRID_MAX or width > GRID_MAX:
        raise BuildError(f"{where}: grid is {h}x{width}, larger than {GRID_MAX}x{GRID_MAX}")
    return np.array(grid, dtype=np.uint8)


def check_task_id(task_id: Any, where: str) -> str:
    if not isinstance(task_id, str) or not task_id:
        raise BuildError(f"{where}: task id {task_id!r} must be a non-empty string")
    # Puzzle names are `<task>|||t<k>|||<map>`; a task id containing the separator could
    # collide with another task's augmented name and silently share its identifier.
    if AUG_SEP in task_id:
        raise BuildError(f"{where}: task id {task_id!r} must not contain {AUG_SEP!r}")
    return task_id


def check_task(task: Any, task_id: str, where: str) -> None:
    """Structure of one raw task: {"train": [{input, output}...], "test": [{input[, output]}...]}.

    Grids themselves are checked by `task_pairs`; test outputs may be absent (filled later
    from a solutions file or with the [[0]] dummy).
    """
    loc = f"{where}: task {task_id!r}"
    if not isinstance(task, dict):
        raise BuildError(f"{loc}: expected an object with 'train' and 'test', got {type(task).__name__}")
    for key in ("train", "test"):
        if key not in task:
            raise BuildError(f"{loc}: missing {key!r}")
        examples = task[key]
        if not isinstance(examples, list):
            raise BuildError(f"{loc} {key}: expected a list of examples, got {type(examples).__name__}")
        if not examples:
            # Upstream would crash drawing randint(0, 0) for an example-less puzzle.
            raise BuildError(f"{loc} {key}: no examples")
        for i, ex in enumerate(examples):
            if not isinstance(ex, dict):
                raise BuildError(f"{loc} {key}[{i}]: expected an object with 'input'/'output'")
            if "input" not in ex:
                raise BuildError(f"{loc} {key}[{i}]: missing 'input'")
            if key == "train" and "output" not in ex:
                raise BuildError(f"{loc} {key}[{i}]: missing 'output'")


def task_pairs(task: dict, task_id: str, where: str, key: str,
               fast: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (input, output) uint8 grids of task[key] (outputs must be filled by now)."""
    pairs = []
    for i, ex in enumerate(task[key]):
        loc = f"{where}: task {task_id!r} {key}[{i}]"
        inp = check_grid(ex["input"], f"{loc}.input", fast)
        if "output" not in ex:
            raise BuildError(f"{loc}: missing 'output'")
        pairs.append((inp, check_grid(ex["output"], f"{loc}.output", fast)))
    return pairs
