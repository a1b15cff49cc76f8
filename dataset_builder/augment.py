"""Augmentation sampling with upstream's exact random draws and de-duplication.

Upstream (docs/fidelity.md#augmentation, #rng-consumption-order), per task in shuffled order, for up to
5 * num_aug trials: `trans_id = randint(0, 8)`, then `permutation(1..9)` (colour 0 stays
fixed); the augmented task (colours first, then the dihedral transform) is kept unless
its sha256 "puzzle hash" was seen before (the original's hash is seeded first); stop at
num_aug + 1 versions.

Drawing. One trial is nine bounded draws on the legacy MT19937 stream: randint(0, 8),
then Fisher-Yates' `random_interval(i)` for i = 8..1, which consumes the stream exactly
as `randint(0, i + 1)` does (masked rejection sampling on 32-bit words). One
`RandomState.randint(0, highs)` call with that 9-value pattern tiled n times draws n
trials at once; the permutations are rebuilt by vectorised swaps. We draw only as many
trials as versions are still missing, so no draw is made that upstream would not make.

De-duplication. The sha256 puzzle hash only serves equality: two versions collide iff
the multisets of (input, output) pairs, shapes included, are equal. Write an
augmentation as a = (t, c) acting by a(X) = D_t(c[X]). Then a1(X) == a2(X) iff
a2^-1 a1 lies in Sym(X) = {s : s(X) == X as a multiset}, i.e. iff a1 and a2 lie in the
same left coset a Sym(X). Only c restricted to the task's colours U matters, so `_SymKeyer`
finds Sym(X) once per task (every (dihedral id, colour bijection of U) mapping the pair
multiset onto itself, by matching colour-normalised pairs) and keys each trial by the
smallest encoding of (t, c|U) over its coset: a handful of vectorised integer ops per
trial instead of building and hashing the augmented grids. `_ContentKeyer` (exact bytes
of the augmented pairs, sorted) is the reference it is tested against, and the fallback
for a task whose symmetry group is too large to enumerate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trm.grids import dihedral

RETRIES_FACTOR = 5  # upstream's ARCAugmentRetriesFactor
# randint(0, 8) for the dihedral id, then random_interval(i) == randint(0, i + 1), i = 8..1.
TRIAL_HIGHS = np.array([8, 9, 8, 7, 6, 5, 4, 3, 2], dtype=np.int64)
MAX_SYMMETRIES = 4096  # beyond this, fall back to content keys (pathological tasks only)

Pairs = list[tuple[np.ndarray, np.ndarray]]


def _dihedral_table() -> np.ndarray:
    """COMPOSE[a, b] = id of D_a after D_b (D_a(D_b(x)))."""
    probe = np.arange(6).reshape(2, 3)
    images = [dihedral(probe, t) for t in range(8)]
    table = np.zeros((8, 8), dtype=np.int64)
    for a in range(8):
        for b in range(8):
            img = dihedral(dihedral(probe, b), a)
            table[a, b] = next(t for t in range(8)
                               if images[t].shape == img.shape and (images[t] == img).all())
    return table


COMPOSE = _dihedral_table()


@dataclass
class Versions:
    """The accepted versions of one task; index 0 is the original (bare task id)."""

    trans: np.ndarray  # uint8 [P] dihedral id
    cmaps: np.ndarray  # uint8 [P, 10] colour map, cmaps[:, 0] == 0
    trials: int  # trials drawn (diagnostics)

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


class _ContentKeyer:
    """Exact keys from the augmented pairs' bytes (the reference semantics)."""

    _HDR = 10  # header cells hold 10 + dimension: one lookup table maps cells and headers
    _HEADER_LUT = np.arange(31, dtype=np.uint8)

    def __init__(self, pairs: Pairs):
        # Per dihedral id: every pair's shape header and transformed cells, concatenated;
        # a pair's blob (4 shape bytes + cells) is self-delimiting and its bounds do not
        # depend on the dihedral id.
        self.cells = []
        for t in range(8):
            parts = []
            for inp, out in pairs:
                a, b = dihedral(inp, t), dihedral(out, t)
                parts += [np.array([*a.shape, *b.shape]) + self._HDR, a.ravel(), b.ravel()]
            self.cells.append(np.concatenate(parts).astype(np.intp))
        bounds = np.cumsum([0] + [4 + a.size + b.size for a, b in pairs])
        self.slices = [slice(int(s), int(e)) for s, e in zip(bounds[:-1], bounds[1:])]

    def keys(self, trans: np.ndarray, cmaps: np.ndarray) -> list:
        luts = np.concatenate([cmaps, np.broadcast_to(self._HEADER_LUT, (len(cmaps), 31))], axis=1)
        rows = np.empty((len(trans), self.cells[0].size), dtype=np.uint8)
        for t in np.unique(trans):
            sel = np.flatnonzero(trans == t)
            rows[sel] = luts[sel][:, self.cells[t]]
        if len(self.slices) == 1:
            return [row.tobytes() for row in rows]
        # The puzzle hash is over the *sorted* pair hashes: compare pair multisets.
        return [tuple(sorted(row.tobytes()[s] for s in self.slices)) for row in rows]


_COLOUR_BYTES = [bytes([c]) for c in range(10)]


def _normalise(a: np.ndarray, b: np.ndarray) -> tuple[tuple, tuple[int, ...]]:
    """Pair -> (form, colours): colours relabelled 1, 2, ... in order of first appearance
    (0 kept); two pairs differ by a colour bijection fixing 0 iff their forms are equal,
    and then colours_A[k] -> colours_B[k] is that bijection. (bytes.find/translate: this
    runs for every pair under all 8 dihedral ids of every task.)"""
    data = a.tobytes() + b.tobytes()
    firsts = sorted((i, c) for c in range(1, 10) if (i := data.find(_COLOUR_BYTES[c])) >= 0)
    colours = tuple(c for _, c in firsts)
    table = bytearray(range(256))
    for k, c in enumerate(colours):
        table[c] = k + 1
    return (a.shape, b.shape, data.translate(table)), colours


class _TooSymmetric(Exception):
    pass


def symmetries(pairs: Pairs) -> tuple[list[int], list[tuple[int, tuple[int, ...]]]]:
    """Sym(X): every (dihedral id s, colour bijection g of U) with g[D_s X] == X as a
    multiset of pairs. Returns (U sorted, [(s, (g[u] for u in U))]). Raises _TooSymmetric
    past MAX_SYMMETRIES solutions or search steps."""
    base = [_normalise(a, b) for a, b in pairs]
    colours = sorted({int(c) for _, cols in base for c in cols})
    found: set[tuple[int, tuple[int, ...]]] = set()
    steps = 0
    base_shapes = sorted((a.shape, b.shape) for a, b in pairs)
    base_forms = sorted(f for f, _ in base)
    for s in range(8):
        if s in (1, 3, 6, 7) and sorted((a.shape[::-1], b.shape[::-1]) for a, b in pairs) != base_shapes:
            continue  # a transposing id cannot map these (non-square) shapes onto themselves
        moved = [_normalise(dihedral(a, s), dihedral(b, s)) for a, b in pairs]
        if sorted(f for f, _ in moved) != base_forms:
            continue

        def search(i: int, used: set[int], g: dict[int, int], s: int = s, moved=moved) -> None:
            nonlocal steps
            steps += 1
            if steps > 50 * MAX_SYMMETRIES:
                raise _TooSymmetric
            if i == len(moved):
                found.add((s, tuple(g[c] for c in colours)))
                if len(found) > MAX_SYMMETRIES:
                    raise _TooSymmetric
                return
            form, src = moved[i]
            tried = set()
            for j, (form_j, dst) in enumerate(base):
                if j in used or form_j != form or (form_j, dst) in tried:
                    continue
                tried.add((form_j, dst))  # identical pairs are interchangeable
                ext, ok = dict(g), True
                taken = set(g.values())
                for x, y in zip(src, dst):
                    if x in ext:
                        ok = ext[x] == y
                    elif y in taken:
                        ok = False
                    else:
                        ext[x] = y
                        taken.add(y)
                    if not ok:
                        break
                if ok:
                    search(i + 1, used | {j}, ext)

        search(0, set(), {})
    return colours, sorted(found)


class _SymKeyer:
    """Keys = smallest encoding of (t, c|U) over the trial's coset a Sym(X)."""

    def __init__(self, pairs: Pairs):
        self.colours, syms = symmetries(pairs)
        if not syms:
            raise AssertionError("the identity must be a symmetry")
        self.sym_t = np.array([s for s, _ in syms], dtype=np.int64)  # [S]
        self.sym_g = np.array([g for _, g in syms], dtype=np.intp).reshape(len(syms), len(self.colours))
        # Encoding: t * 16^|U| + sum_k c'[U_k] * 16^k (colours < 16, |U| <= 9: fits int64).
        self.weights = (16 ** np.arange(len(self.colours), dtype=np.int64))
        self.t_weight = np.int64(16 ** len(self.colours))

    def keys(self, trans: np.ndarray, cmaps: np.ndarray) -> list[int]:
        # a o sigma = (COMPOSE[t_a, s], c_a o g): colours of U go to c_a[g[u]].
        t_prime = COMPOSE[trans.astype(np.intp)[:, None], self.sym_t[None, :]]  # [n, S]
        c_prime = cmaps.astype(np.int64)[:, self.sym_g]  # [n, S, |U|]
        enc = t_prime * self.t_weight + c_prime @ self.weights
        return enc.min(axis=1).tolist()


def make_keyer(pairs: Pairs):
    try:
        return _SymKeyer(pairs)
    except _TooSymmetric:
        return _ContentKeyer(pairs)


def sample_versions(rs: np.random.RandomState, pairs: Pairs, num_aug: int, keyer=None) -> Versions:
    """Draw the task's augmentations from `rs` exactly as upstream does.

    `pairs`: every (input, output) of the task in both splits (upstream hashes them all).
    """
    target = num_aug + 1
    identity = np.arange(10, dtype=np.uint8)
    trans_acc, cmap_acc = [np.zeros(1, np.uint8)], [identity[None]]
    trials_left = RETRIES_FACTOR * num_aug if num_aug > 0 else 0
    if trials_left == 0:
        return Versions(trans_acc[0], cmap_acc[0], 0)
    keyer = keyer or make_keyer(pairs)
    seen = set(keyer.keys(trans_acc[0], cmap_acc[0]))
    accepted, drawn = 1, 0
    while accepted < target and trials_left > 0:
        n = min(target - accepted, trials_left)  # never more trials than versions missing
        draws = rs.randint(0, np.tile(TRIAL_HIGHS, n)).reshape(n, 9)
        trials_left -= n
        drawn += n
        trans, cmaps = decode_trials(draws)
        keep = np.zeros(n, dtype=bool)
        for j, k in enumerate(keyer.keys(trans, cmaps)):
            if k not in seen:
                seen.add(k)
                keep[j] = True
        accepted += int(keep.sum())
        trans_acc.append(trans[keep])
        cmap_acc.append(cmaps[keep])
    return Versions(np.concatenate(trans_acc), np.concatenate(cmap_acc), drawn)
