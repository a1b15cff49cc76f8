"""ARC grids <-> TRM token sequences, and the augmentations on them.

This one module owns the encoding and the dihedral / colour transforms; the dataset
builder, the evaluator and the competition notebook all import it, so an augmented
prediction is always mapped back by exactly the inverse of what built it.

Token layout (upstream TRM, docs/fidelity.md#token-layout): a 30x30 canvas flattened row-major
to 900 tokens; PAD 0, EOS 1, colour c -> c + 2 (vocab 12). A grid of h x w placed at
(pad_r, pad_c) is followed by an EOS row at pad_r + h (columns pad_c .. pad_c + w - 1)
and an EOS column at pad_c + w (rows pad_r .. pad_r + h - 1), each only where it lies
inside the canvas; the corner cell stays PAD.
"""

from __future__ import annotations

import hashlib

import numpy as np

PAD = 0
EOS = 1
COLOR_OFFSET = 2  # colour c is token c + 2
NUM_COLORS = 10
VOCAB_SIZE = 12
GRID_MAX = 30  # canvas side
SEQ_LEN = GRID_MAX * GRID_MAX  # 900 grid tokens per example
IGNORE_LABEL_ID = -100  # label of PAD cells once batched: no loss, no metric

# Dihedral ids as upstream numbers them (rot90 is counter-clockwise, np.rot90).
DIHEDRAL_NAMES = (
    "identity", "rot90", "rot180", "rot270", "flip_lr", "flip_ud", "transpose", "anti_transpose",
)
DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)

AUG_SEP = "|||"


def dihedral(grid: np.ndarray, tid: int) -> np.ndarray:
    """Apply dihedral transform `tid` (0..7) to a 2-D array (a view, like np.rot90).

    Written as slicing views: the same arrays as np.rot90 / np.fliplr / np.flipud /
    .T (tests/test_grids.py checks this), ~10x cheaper per call, which matters for the
    builder (millions of small grids).
    """
    grid = np.asarray(grid)
    if tid == 0:
        return grid
    if tid == 1:
        return grid.T[::-1]  # np.rot90(grid, 1): counter-clockwise
    if tid == 2:
        return grid[::-1, ::-1]  # np.rot90(grid, 2)
    if tid == 3:
        return grid.T[:, ::-1]  # np.rot90(grid, 3)
    if tid == 4:
        return grid[:, ::-1]  # np.fliplr
    if tid == 5:
        return grid[::-1]  # np.flipud
    if tid == 6:
        return grid.T  # transpose
    if tid == 7:
        return grid.T[::-1, ::-1]  # np.fliplr(np.rot90(grid)): anti-diagonal transpose
    raise ValueError(f"dihedral id must be 0..7, got {tid}")


def inverse_dihedral(grid: np.ndarray, tid: int) -> np.ndarray:
    return dihedral(grid, DIHEDRAL_INVERSE[tid])


def augment(grid: np.ndarray, tid: int, colour_map: np.ndarray) -> np.ndarray:
    """Upstream order: colours first, then geometry. colour_map: int array [10], map[old] = new."""
    return np.ascontiguousarray(dihedral(np.asarray(colour_map, dtype=np.uint8)[grid], tid))


def inverse_augment(grid: np.ndarray, tid: int, colour_map: np.ndarray) -> np.ndarray:
    """Exact inverse of `augment`: undo the geometry, then the colours (argsort of the map)."""
    inv_colours = np.argsort(np.asarray(colour_map)).astype(np.uint8)
    return np.ascontiguousarray(inv_colours[inverse_dihedral(grid, tid)])


def aug_name(task_id: str, tid: int, colour_map: np.ndarray) -> str:
    """Upstream puzzle name, e.g. `8b28cd80|||t3|||0768314952`."""
    digits = "".join(str(int(c)) for c in colour_map)
    return f"{task_id}{AUG_SEP}t{tid}{AUG_SEP}{digits}"


def parse_aug_name(name: str) -> tuple[str, int, np.ndarray]:
    """Inverse of `aug_name`. A bare task id means the identity augmentation."""
    parts = name.split(AUG_SEP)
    if len(parts) == 1:
        return name, 0, np.arange(NUM_COLORS, dtype=np.uint8)
    if len(parts) != 3 or not parts[1].startswith("t") or len(parts[2]) != NUM_COLORS:
        raise ValueError(f"not an augmented puzzle name: {name!r}")
    colour_map = np.array([int(ch) for ch in parts[2]], dtype=np.uint8)
    return parts[0], int(parts[1][1:]), colour_map


def encode_grid(grid: np.ndarray, pad_r: int = 0, pad_c: int = 0) -> np.ndarray:
    """One grid -> uint8 [900] tokens with its EOS border (see module docstring)."""
    grid = np.asarray(grid)
    h, w = grid.shape
    canvas = np.zeros((GRID_MAX, GRID_MAX), dtype=np.uint8)
    canvas[pad_r:pad_r + h, pad_c:pad_c + w] = grid.astype(np.uint8) + COLOR_OFFSET
    eos_r, eos_c = pad_r + h, pad_c + w
    if eos_r < GRID_MAX:
        canvas[eos_r, pad_c:eos_c] = EOS
    if eos_c < GRID_MAX:
        canvas[pad_r:eos_r, eos_c] = EOS
    return canvas.reshape(-1)


def crop(tokens: np.ndarray) -> np.ndarray:
    """Tokens [900] -> colour grid, as upstream's evaluator crops a prediction.

    Scans rows from the top; each row shrinks the column limit to its first
    non-colour token; keeps the top-left rectangle of largest area (first one on
    ties). The result can be empty (0 x 0) when the first token is not a colour.
    """
    canvas = np.asarray(tokens).reshape(GRID_MAX, GRID_MAX)
    is_colour = (canvas >= COLOR_OFFSET) & (canvas < COLOR_OFFSET + NUM_COLORS)
    best_area, best = 0, (0, 0)
    n_cols = GRID_MAX
    for n_rows in range(1, GRID_MAX + 1):
        row = is_colour[n_rows - 1, :n_cols]
        bad = np.flatnonzero(~row)
        if bad.size:
            n_cols = int(bad[0])
        if n_rows * n_cols > best_area:
            best_area, best = n_rows * n_cols, (n_rows, n_cols)
        if n_cols == 0:
            break
    h, w = best
    return (canvas[:h, :w].astype(np.int16) - COLOR_OFFSET).astype(np.uint8)


def grid_hash(grid: np.ndarray) -> str:
    """sha256 over the shape (one byte per dimension) and the uint8 cells."""
    grid = np.ascontiguousarray(grid, dtype=np.uint8)
    h = hashlib.sha256()
    h.update(bytes(grid.shape))
    h.update(grid.tobytes())
    return h.hexdigest()
