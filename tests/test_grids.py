"""trm.grids: dihedral transforms, colour maps, names, token encoding, crop, hashes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from trm import grids
from trm.grids import (
    DIHEDRAL_INVERSE,
    EOS,
    GRID_MAX,
    PAD,
    aug_name,
    augment,
    crop,
    dihedral,
    encode_grid,
    grid_hash,
    inverse_augment,
    inverse_dihedral,
    parse_aug_name,
)

# Upstream's definitions (docs/fidelity.md#augmentation), spelled with numpy's own functions.
REFERENCE = [
    lambda g: g,
    lambda g: np.rot90(g, 1),
    lambda g: np.rot90(g, 2),
    lambda g: np.rot90(g, 3),
    np.fliplr,
    np.flipud,
    lambda g: g.T,
    lambda g: np.fliplr(np.rot90(g, 1)),
]


def random_grids(n=40, seed=0, max_side=GRID_MAX):
    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (1, GRID_MAX), (GRID_MAX, 1), (GRID_MAX, GRID_MAX), (2, 7), (7, 2)]
    shapes += [tuple(rng.integers(1, max_side + 1, 2)) for _ in range(n)]
    return [rng.integers(0, 10, size=s).astype(np.uint8) for s in shapes]


def random_colour_maps(n=10, seed=1):
    rng = np.random.default_rng(seed)
    maps = [np.arange(10, dtype=np.uint8)]
    maps += [np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8) for _ in range(n)]
    maps += [rng.permutation(10).astype(np.uint8)]  # inverse_augment works for any bijection
    return maps


@pytest.mark.parametrize("tid", range(8))
def test_dihedral_matches_upstream_definitions(tid):
    for g in random_grids():
        assert np.array_equal(dihedral(g, tid), REFERENCE[tid](g))


@pytest.mark.parametrize("tid", range(8))
def test_dihedral_inverse_is_identity(tid):
    for g in random_grids():
        assert np.array_equal(inverse_dihedral(dihedral(g, tid), tid), g)
        assert np.array_equal(dihedral(inverse_dihedral(g, tid), tid), g)


def test_inverse_table_is_an_involution_on_the_group():
    assert sorted(DIHEDRAL_INVERSE) == list(range(8))
    probe = np.arange(12).reshape(3, 4)
    for t in range(8):
        assert np.array_equal(dihedral(dihedral(probe, t), DIHEDRAL_INVERSE[t]), probe)


def test_dihedral_rejects_bad_id():
    with pytest.raises(ValueError):
        dihedral(np.zeros((2, 2)), 8)


@pytest.mark.parametrize("tid", range(8))
def test_augment_inverse_round_trip(tid):
    for cmap in random_colour_maps():
        for g in random_grids(10, seed=tid):
            aug = augment(g, tid, cmap)
            assert aug.dtype == np.uint8 and aug.flags.c_contiguous
            # colours first, then geometry (commutes, but check the documented order)
            assert np.array_equal(aug, REFERENCE[tid](cmap[g]))
            assert np.array_equal(inverse_augment(aug, tid, cmap), g)


def test_aug_name_round_trip():
    for cmap in random_colour_maps():
        for tid in range(8):
            name = aug_name("8b28cd80", tid, cmap)
            assert name == f"8b28cd80|||t{tid}|||{''.join(map(str, cmap))}"
            task, t, m = parse_aug_name(name)
            assert (task, t) == ("8b28cd80", tid) and np.array_equal(m, cmap)
    assert aug_name("8b28cd80", 3, [0, 7, 6, 8, 3, 1, 4, 9, 5, 2]) == "8b28cd80|||t3|||0768314952"


def test_parse_bare_name_is_identity():
    task, t, m = parse_aug_name("ExtractObjects10")
    assert (task, t) == ("ExtractObjects10", 0) and np.array_equal(m, np.arange(10))


@pytest.mark.parametrize("bad", ["a|||t1", "a|||x1|||0123456789", "a|||t1|||012", "a|||t1|||0123456789|||x"])
def test_parse_rejects_malformed(bad):
    with pytest.raises(ValueError):
        parse_aug_name(bad)


def test_encode_crop_round_trip_at_origin():
    for g in random_grids(60):
        tokens = encode_grid(g)
        assert tokens.shape == (GRID_MAX * GRID_MAX,) and tokens.dtype == np.uint8
        assert np.array_equal(crop(tokens), g)


def _reference_encode(g, pad_r, pad_c):
    """Cell-by-cell statement of docs/fidelity.md#token-layout."""
    h, w = g.shape
    canvas = [[PAD] * GRID_MAX for _ in range(GRID_MAX)]
    for r in range(h):
        for c in range(w):
            canvas[pad_r + r][pad_c + c] = int(g[r, c]) + 2
    if pad_r + h < GRID_MAX:
        for c in range(pad_c, pad_c + w):
            canvas[pad_r + h][c] = EOS
    if pad_c + w < GRID_MAX:
        for r in range(pad_r, pad_r + h):
            canvas[r][pad_c + w] = EOS
    return np.array(canvas, dtype=np.uint8).reshape(-1)


def test_encode_translated_matches_reference():
    rng = np.random.default_rng(5)
    for g in random_grids(60, seed=3):
        h, w = g.shape
        offsets = {(0, 0), (GRID_MAX - h, GRID_MAX - w), (0, GRID_MAX - w), (GRID_MAX - h, 0)}
        offsets.add((int(rng.integers(0, GRID_MAX - h + 1)), int(rng.integers(0, GRID_MAX - w + 1))))
        for pr, pc in offsets:
            assert np.array_equal(encode_grid(g, pr, pc), _reference_encode(g, pr, pc)), (g.shape, pr, pc)


def test_eos_edge_cases():
    wide = np.ones((3, GRID_MAX), dtype=np.uint8)
    c = encode_grid(wide).reshape(GRID_MAX, GRID_MAX)
    assert (c[3, :] == EOS).all() and (c[:3] == 3).all() and (c[4:] == PAD).all()  # no EOS column at 30
    tall = np.ones((GRID_MAX, 2), dtype=np.uint8)
    c = encode_grid(tall).reshape(GRID_MAX, GRID_MAX)
    assert (c[:, 2] == EOS).all() and (c[:, 3:] == PAD).all()  # no EOS row at 30
    full = np.full((GRID_MAX, GRID_MAX), 9, dtype=np.uint8)
    assert (encode_grid(full) == 11).all()
    g = np.zeros((2, 3), dtype=np.uint8)
    c = encode_grid(g, 5, 7).reshape(GRID_MAX, GRID_MAX)
    assert (c[5:7, 7:10] == 2).all()
    assert (c[7, 7:10] == EOS).all() and (c[5:7, 10] == EOS).all()
    assert c[7, 10] == PAD  # the corner stays PAD
    assert (c != PAD).sum() == 6 + 3 + 2
    c = encode_grid(g, GRID_MAX - 2, GRID_MAX - 3).reshape(GRID_MAX, GRID_MAX)  # flush with the corner
    assert (c != PAD).sum() == 6


def test_crop_of_translated_grid_is_not_the_grid():
    # The evaluator's crop assumes offset (0, 0): a leading PAD row crops to nothing.
    g = np.ones((2, 2), dtype=np.uint8)
    assert crop(encode_grid(g, 1, 0)).size == 0


def test_grid_hash_covers_shape_and_cells():
    g = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert grid_hash(g) == hashlib.sha256(bytes([2, 3]) + g.tobytes()).hexdigest()
    assert grid_hash(g) != grid_hash(g.reshape(3, 2))
    assert grid_hash(g.T) == grid_hash(np.ascontiguousarray(g.T))


def test_constants():
    assert (grids.PAD, grids.EOS, grids.COLOR_OFFSET, grids.VOCAB_SIZE, grids.SEQ_LEN) == (0, 1, 2, 12, 900)
