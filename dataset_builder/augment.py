"""Augmentation sampling with upstream's exact random draws and de-duplication.

Upstream (trm-upstream.md §7.2, §7.4), per task in shuffled order, for up to
5 * num_aug trials: `trans_id = randint(0, 8)`, then `permutation(1..9)` (colour 0 stays
fixed); the augmented task (colours first, then the dihedral transform) is kept unless
its sha256 "puzzle hash" was seen before (the original's hash is seeded first); stop at
num_aug + 1 versions.

Two shortcuts keep the stream identical while being much faster:

* One trial is nine bounded draws on the legacy MT19937 stream: randint(0, 8) and then
  Fisher-Yates' `random_interval(i)` for i = 8..1, which consumes the stream exactly as
  `randint(0, i + 1)` does (masked rejection sampling on 32-bit words). A single
  `RandomState.randint(0, highs)` call with the 9-value pattern tiled n times therefore
  draws n trials at once, and the permutations are rebuilt by vectorised swaps. We draw
  only as many trials as versions are still missing, so no draw is ever made that
  upstream would not make.
* The sha256 puzzle hash only serves equality: two versions collide iff the multisets of
  (input, output) pairs are equal (shape included). We compare exact bytes instead: each
  pair becomes a self-delimiting blob (4 shape bytes + cells) and a version's key is the
  sorted tuple of its blobs. All versions of a chunk are computed with one gather per
  dihedral id (a colour lookup table applied to the pre-transformed cells).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trm.grids import dihedral

RETRIES_FACTOR = 5  # upstream's ARCAugmentRetriesFactor
# randint(0, 8) for the dihedral id, then random_interval(i) == randint(0, i + 1), i = 8..1.
TRIAL_HIGHS = np.array([8, 9, 8, 7, 6, 5, 4, 3, 2], dtype=np.int64)
_HDR = 10  # header cells hold 10 + dimension, so one lookup table maps cells and headers
_HEADER_LUT = np.arange(31, dtype=np.uint8)  # entries 10..40 -> dimension 0..30


@dataclass
class Versions:
    """The accepted versions of one task; index 0 is the original (bare task id)."""

    trans: np.ndarray  # uint8 [P] dihedral id
    cmaps: np.ndarray  # uint8 [P, 10] colour map, cmaps[:, 0] == 0
    trials: int  # trials drawn (for diagnostics)

    def __len__(self) -> int:
        return len(self.trans)


def decode_trials(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[n, 9] bounded draws -> (dihedral ids uint8 [n], colour maps uint8 [n, 10])."""
    n = len(draws)
    perm = np.tile(np.arange(1, 10, dtype=np.uint8), (n, 1))
    rows = np.arange(n)
    # numpy's legacy shuffle: for i = len-1 .. 1, swap a[i] with a[random_interval(i)].
    for k, i in enumerate(range(8, 0, -1)):
        j = draws[:, 1 + k]
        picked = perm[rows, j]
        perm[rows, j] = perm[:, i]
        perm[:, i] = picked
    cmaps = np.zeros((n, 10), dtype=np.uint8)
    cmaps[:, 1:] = perm
    return draws[:, 0].astype(np.uint8), cmaps


class _Keyer:
    """Exact de-duplication keys of augmented versions of one task."""

    def __init__(self, pairs: list[tuple[np.ndarray, np.ndarray]]):
        # Per dihedral id: all pairs' transformed cells (values 0..9) and shape headers
        # (10 + dim), concatenated; the blob boundaries do not depend on the id.
        self.cells = []
        for t in range(8):
            parts = []
            for inp, out in pairs:
                a, b = dihedral(inp, t), dihedral(out, t)
                hdr = np.array([*a.shape, *b.shape], dtype=np.uint8) + _HDR
                parts += [hdr, a.ravel(), b.ravel()]
            self.cells.append(np.concatenate(parts).astype(np.intp))  # intp: no index conversion per gather
        bounds = np.cumsum([0] + [4 + a.size + b.size for a, b in pairs])
        self.slices = [slice(int(s), int(e)) for s, e in zip(bounds[:-1], bounds[1:])]

    def contents(self, trans: np.ndarray, cmaps: np.ndarray) -> np.ndarray:
        """uint8 [n, L]: the augmented cells of each version (colours mapped, then geometry)."""
        luts = np.concatenate([cmaps, np.broadcast_to(_HEADER_LUT, (len(cmaps), 31))], axis=1)
        out = np.empty((len(trans), self.cells[0].size), dtype=np.uint8)
        for t in np.unique(trans):
            sel = np.flatnonzero(trans == t)
            out[sel] = luts[sel][:, self.cells[t]]
        return out

    def key(self, row: np.ndarray):
        data = row.tobytes()
        if len(self.slices) == 1:
            return data
        return tuple(sorted(data[s] for s in self.slices))


def sample_versions(
    rs: np.random.RandomState, pairs: list[tuple[np.ndarray, np.ndarray]], num_aug: int
) -> Versions:
    """Draw the task's augmentations from `rs` exactly as upstream does.

    `pairs`: every (input, output) of the task in both splits, in upstream's order (only
    their multiset matters for the hash, but the order must be the same for all versions).
    """
    target = num_aug + 1
    keyer = _Keyer(pairs)
    identity = np.arange(10, dtype=np.uint8)
    seen = {keyer.key(keyer.contents(np.zeros(1, np.uint8), identity[None])[0])}
    trans_acc, cmap_acc = [np.zeros(1, np.uint8)], [identity[None]]
    accepted = 1
    trials_left = RETRIES_FACTOR * num_aug if num_aug > 0 else 0
    drawn = 0
    while accepted < target and trials_left > 0:
        n = min(target - accepted, trials_left)  # never more trials than versions missing
        draws = rs.randint(0, np.tile(TRIAL_HIGHS, n)).reshape(n, 9)
        trials_left -= n
        drawn += n
        trans, cmaps = decode_trials(draws)
        keep = np.zeros(n, dtype=bool)
        for j, row in enumerate(keyer.contents(trans, cmaps)):
            k = keyer.key(row)
            if k not in seen:
                seen.add(k)
                keep[j] = True
        accepted += int(keep.sum())
        trans_acc.append(trans[keep])
        cmap_acc.append(cmaps[keep])
    return Versions(np.concatenate(trans_acc), np.concatenate(cmap_acc), drawn)
