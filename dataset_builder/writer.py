"""Second pass: upstream's per-example draws, vectorised encoding, memmap output.

Draw order (docs/fidelity.md#rng-consumption-order, step 3), split by split, group by group, puzzle by
puzzle: `no_aug_id = randint(0, n_examples)`, then -- train split only -- for each other
example `pad_r = randint(0, 31 - max(h_in, h_out))` and `pad_c` likewise from the widths.
Calling `RandomState.randint` ~11 M times costs ~2.5 us each, so `LegacyStream` pulls the
raw 32-bit words from the same generator in bulk and replays numpy's legacy bounded
draw (mask to the next power of two minus one, reject values above the bound; a bound of
0 consumes nothing). `randint(0, 2**32, dtype=uint32)` hands out exactly one raw word per
value, so the stream stays identical.

Encoding (trm.grids' layout): every example of a group shares its task's grids, so each
(dihedral id, example) gets one template -- tokens of the untransformed colours on a 31x31
canvas with the EOS row/column always present -- and each row is the template's colour-
mapped rectangle written at its offset into a zeroed 31x31 block with one fancy-indexed
assignment per template; cropping to 30x30 drops exactly the EOS cells upstream would
not draw (those at row/column 30).

Output goes into preallocated .npy files (np.lib.format.open_memmap writes the header
and sizes the file). Rows are written through short-lived np.memmap windows, one per
group, so the process never keeps more than one group's pages mapped: a whole-file
memmap would count every written page into the resident set (~9 GB at num_aug 1000).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from trm.grids import COLOR_OFFSET, EOS, GRID_MAX, dihedral

_CANVAS = GRID_MAX + 1  # room for an EOS row/column at index 30, cropped at the end


class LegacyStream:
    """`randint(0, high)` draws of a legacy RandomState, replayed from its raw words."""

    CHUNK = 1 << 16

    def __init__(self, rs: np.random.RandomState):
        self.rs = rs
        self.buf: list[int] = []
        self.pos = 0

    def refill(self) -> None:
        fresh = self.rs.randint(0, 1 << 32, size=self.CHUNK, dtype=np.uint32).tolist()
        self.buf = self.buf[self.pos:] + fresh
        self.pos = 0

    def randint(self, high: int) -> int:
        """One draw (slow path, for tests and odd calls)."""
        while True:
            try:
                value, self.pos = _bounded(self.buf, self.pos, high)
                return value
            except IndexError:
                self.refill()


def _mask(high: int) -> int:
    return (1 << (high - 1).bit_length()) - 1


def _bounded(buf: list[int], pos: int, high: int) -> tuple[int, int]:
    bound = high - 1
    if bound == 0:
        return 0, pos
    mask = _mask(high)
    value = buf[pos] & mask
    pos += 1
    while value > bound:
        value = buf[pos] & mask
        pos += 1
    return value, pos


_MASKS = [0] + [_mask(h) for h in range(1, GRID_MAX + 2)]


def draw_offsets(stream: LegacyStream, trans: np.ndarray, pad_highs: np.ndarray | None, n_ex: int):
    """Per puzzle: no_aug_id, then (train split) the offsets of every other example.

    pad_highs: int [8, n_ex, 2] = 31 - max(h), 31 - max(w) per dihedral id and example,
    or None for the test split (no translation, only the no_aug_id draws).
    Returns (pad_r, pad_c) int16 [P, n_ex] (zeros for the test split).
    """
    n_puz = len(trans)
    pad_r = np.zeros((n_puz, n_ex), dtype=np.int16)
    pad_c = np.zeros((n_puz, n_ex), dtype=np.int16)
    highs = pad_highs.tolist() if pad_highs is not None else None
    masks = _MASKS  # pad highs are <= 31
    mk = _mask(n_ex) if n_ex > 1 else 0
    trans_l = trans.tolist()
    buf, pos = stream.buf, stream.pos
    p = 0
    while p < n_puz:
        start = pos
        try:
            # Inlined _bounded (hot loop: ~11 M draws for the full build).
            if n_ex > 1:
                k = buf[pos] & mk
                pos += 1
                while k >= n_ex:
                    k = buf[pos] & mk
                    pos += 1
            else:
                k = 0
            if highs is not None:
                row_r, row_c = [0] * n_ex, [0] * n_ex
                for e, (hr, hc) in enumerate(highs[trans_l[p]]):
                    if e == k:
                        continue
                    if hr > 1:
                        m = masks[hr]
                        v = buf[pos] & m
                        pos += 1
                        while v >= hr:
                            v = buf[pos] & m
                            pos += 1
                        row_r[e] = v
                    if hc > 1:
                        m = masks[hc]
                        v = buf[pos] & m
                        pos += 1
                        while v >= hc:
                            v = buf[pos] & m
                            pos += 1
                        row_c[e] = v
                pad_r[p] = row_r
                pad_c[p] = row_c
            p += 1
        except IndexError:
            # Ran off the buffer mid-puzzle: redo this puzzle on a longer buffer.
            stream.pos = start
            stream.refill()
            buf, pos = stream.buf, stream.pos
    stream.buf, stream.pos = buf, pos
    return pad_r, pad_c


def template(grid: np.ndarray) -> np.ndarray:
    """Tokens of `grid` (identity colours) with its EOS row and column: uint8 [h+1, w+1]."""
    h, w = grid.shape
    t = np.zeros((h + 1, w + 1), dtype=np.uint8)
    t[:h, :w] = grid + COLOR_OFFSET
    t[h, :w] = EOS
    t[:h, w] = EOS
    return t


class GroupEncoder:
    """All augmented versions of one task's examples of one split -> token rows."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]], translate: bool):
        self.n_ex = len(pairs)
        self.pairs = pairs
        self.translate = translate
        self._templates: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        if translate:
            highs = np.zeros((8, self.n_ex, 2), dtype=np.int64)
            for e, (inp, out) in enumerate(pairs):
                hmax, wmax = max(inp.shape[0], out.shape[0]), max(inp.shape[1], out.shape[1])
                same = (GRID_MAX + 1 - hmax, GRID_MAX + 1 - wmax)
                for t in range(8):
                    # Dihedral ids 1, 3, 6, 7 swap height and width.
                    highs[t, e] = same[::-1] if t in (1, 3, 6, 7) else same
            self.pad_highs = highs
        else:
            self.pad_highs = None

    def templates(self, t: int) -> list[tuple[np.ndarray, np.ndarray]]:
        if t not in self._templates:
            self._templates[t] = [(template(dihedral(a, t)), template(dihedral(b, t))) for a, b in self.pairs]
        return self._templates[t]

    def encode(self, trans: np.ndarray, cmaps: np.ndarray, pad_r: np.ndarray, pad_c: np.ndarray):
        """-> inputs, labels: uint8 [P * n_ex, 900], puzzle-major like upstream."""
        n_puz, n_ex = len(trans), self.n_ex
        luts = np.empty((n_puz, COLOR_OFFSET + 10), dtype=np.uint8)
        luts[:, 0], luts[:, 1] = 0, EOS
        luts[:, COLOR_OFFSET:] = cmaps + COLOR_OFFSET
        n_rows = n_puz * n_ex
        blocks = [np.zeros((n_rows, _CANVAS, _CANVAS), dtype=np.uint8) for _ in range(2)]
        for t in np.unique(trans).tolist():
            puz = np.flatnonzero(trans == t)
            lut_t = luts[puz]
            for e, pair_t in enumerate(self.templates(t)):
                rows = puz * n_ex + e
                r, c = pad_r[puz, e], pad_c[puz, e]
                for block, tpl in zip(blocks, pair_t):
                    a, b = tpl.shape
                    # All (a, b) windows of every row, as a strided view of the block
                    # (what sliding_window_view builds, without its per-call overhead).
                    win = np.ndarray((n_rows, _CANVAS + 1 - a, _CANVAS + 1 - b, a, b), np.uint8, block,
                                     strides=(_CANVAS * _CANVAS, _CANVAS, 1, _CANVAS, 1))
                    win[rows, r, c] = lut_t[:, tpl.ravel()].reshape(len(puz), a, b)
        return [blk[:, :GRID_MAX, :GRID_MAX].reshape(n_puz * n_ex, GRID_MAX * GRID_MAX) for blk in blocks]


def _reserve(path: Path, size: int) -> None:
    """Allocate the file's blocks now. open_memmap leaves a sparse file, and storing into a memmap
    page that the full disk cannot back kills the process with SIGBUS -- no cleanup, no message.
    Reserved up front, a full disk is an OSError(ENOSPC) here instead, before any row is written."""
    if not hasattr(os, "posix_fallocate"):  # macOS / Windows: nothing to reserve with
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        # EOPNOTSUPP / EINVAL: a filesystem without fallocate; the memmap writes go ahead as before
    finally:
        os.close(fd)


class NpyRowWriter:
    """A preallocated [n_rows, 900] uint8 .npy file filled front to back."""

    def __init__(self, path: Path, n_rows: int, width: int = GRID_MAX * GRID_MAX):
        self.path = Path(path)
        self.shape = (n_rows, width)
        arr = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint8, shape=self.shape)
        self.offset = arr.offset
        del arr
        self.row = 0
        _reserve(self.path, self.offset + n_rows * width)

    def write(self, rows: np.ndarray) -> None:
        n = len(rows)
        if n == 0:
            return
        if self.row + n > self.shape[0]:
            raise RuntimeError(f"{self.path}: writing past the preallocated {self.shape[0]} rows")
        window = np.memmap(self.path, dtype=np.uint8, mode="r+", shape=(n, self.shape[1]),
                           offset=self.offset + self.row * self.shape[1])
        window[:] = rows
        del window  # unmap: written pages leave this process's resident set
        self.row += n

    def close(self) -> None:
        if self.row != self.shape[0]:
            raise RuntimeError(f"{self.path}: wrote {self.row} rows, expected {self.shape[0]}")
