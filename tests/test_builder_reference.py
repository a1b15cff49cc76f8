"""The fast builder against a slow, literal restatement of upstream's algorithm.

`reference_build` follows docs/fidelity.md#builder-format step by step -- one RandomState call per
draw, sha256 puzzle hashes, Python lists and np.stack, json.dump -- with none of the
builder's shortcuts (batched trial draws, symmetry-coset de-duplication, replayed raw
stream, vectorised encoding, memmap windows). Synthetic tasks are chosen to stress those
shortcuts: symmetric grids, colour-swap-symmetric and duplicated pairs, too few colours
to fill the augmentation budget, non-square and 30-wide grids, ARC-AGI-1 key order,
several test inputs, two test sets, missing solutions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from dataset_builder.build import BuildConfig, build_dataset
from trm.grids import encode_grid

REF_DIHEDRAL = [
    lambda g: g,
    lambda g: np.rot90(g, 1),
    lambda g: np.rot90(g, 2),
    lambda g: np.rot90(g, 3),
    np.fliplr,
    np.flipud,
    lambda g: g.T,
    lambda g: np.fliplr(np.rot90(g, 1)),
]


def _ghash(g: np.ndarray) -> str:
    g = np.ascontiguousarray(g, dtype=np.uint8)
    return hashlib.sha256(b"".join(x.to_bytes(1, "big") for x in g.shape) + g.tobytes()).hexdigest()


def _phash(conv: dict) -> str:
    hs = sorted(f"{_ghash(i)}|{_ghash(o)}" for exs in conv.values() for i, o in exs)
    return hashlib.sha256("|".join(hs).encode()).hexdigest()


def reference_build(prefix: str, subsets: list[str], test_names: set[str], out: Path, *, seed=42,
                    num_aug=1000, start=1) -> None:
    rs = np.random.RandomState(seed)
    data, test_puzzles = reference_groups(rs, prefix, subsets, test_names, num_aug)
    ids = reference_ids(data, start)
    n_ids = start + len(ids)
    _write_reference(rs, data, ids, n_ids, test_puzzles, out)


def reference_groups(rs: np.random.RandomState, prefix: str, subsets: list[str], test_names: set[str],
                     num_aug: int) -> tuple[dict[str, list], dict]:
    """Augmentation: {split: [group = [(name, examples of that split)], ...]} and the test puzzles."""
    data: dict[str, list] = {}
    test_puzzles = {}
    for subset in subsets:
        with open(f"{prefix}_{subset}_challenges.json") as f:
            puzzles = json.load(f)
        sols_path = Path(f"{prefix}_{subset}_solutions.json")
        if sols_path.is_file():
            sols = json.loads(sols_path.read_text())
            for pid in puzzles:
                for i, g in enumerate(sols[pid]):
                    puzzles[pid]["test"][i]["output"] = g
        else:
            for p in puzzles.values():
                for ex in p["test"]:
                    ex.setdefault("output", [[0]])
        items = list(puzzles.items())
        rs.shuffle(items)
        for name, task in items:
            is_test = subset in test_names
            dests = {"train": "train", "test": "test" if is_test else "train"}
            conv = {d: [] for d in set(dests.values())}
            for key, exs in task.items():
                conv[dests[key]] += [(np.array(e["input"], np.uint8), np.array(e["output"], np.uint8))
                                     for e in exs]
            if is_test:
                test_puzzles[name] = task
            group = [(name, conv)]
            if num_aug > 0:
                seen = {_phash(conv)}
                for _ in range(5 * num_aug):
                    t = rs.randint(0, 8)
                    m = np.concatenate([np.arange(0, 1, dtype=np.uint8),
                                        rs.permutation(np.arange(1, 10, dtype=np.uint8))])
                    aug_name = f"{name}|||t{t}|||{''.join(str(x) for x in m)}"
                    aug = {d: [(REF_DIHEDRAL[t](m[i]), REF_DIHEDRAL[t](m[o])) for i, o in exs]
                           for d, exs in conv.items()}
                    h = _phash(aug)
                    if h not in seen:
                        seen.add(h)
                        group.append((aug_name, aug))
                    if len(group) >= num_aug + 1:
                        break
            for d in ("train", "test"):
                if d in conv:
                    data.setdefault(d, []).append([(n, c[d]) for n, c in group])
    return data, test_puzzles


def reference_ids(data: dict[str, list], start: int = 1) -> dict[str, int]:
    """Ids split by split, group by group, puzzle by puzzle; a repeated name keeps its id."""
    ids: dict[str, int] = {}
    for split in data.values():
        for group in split:
            for name, _ in group:
                ids.setdefault(name, start + len(ids))
    return ids


def _write_reference(rs, data: dict[str, list], ids: dict[str, int], n_ids: int, test_puzzles: dict,
                     out: Path) -> None:
    for split, groups in data.items():
        d = out / split
        d.mkdir(parents=True)
        res = {"inputs": [], "labels": [], "puzzle_identifiers": [], "puzzle_indices": [0],
               "group_indices": [0]}
        n_ex = 0
        for group in groups:
            for name, exs in group:
                no_aug = rs.randint(0, len(exs))
                for k, (a, b) in enumerate(exs):
                    if split == "train" and k != no_aug:
                        pr = rs.randint(0, 30 - max(a.shape[0], b.shape[0]) + 1)
                        pc = rs.randint(0, 30 - max(a.shape[1], b.shape[1]) + 1)
                    else:
                        pr = pc = 0
                    res["inputs"].append(encode_grid(np.ascontiguousarray(a), pr, pc))
                    res["labels"].append(encode_grid(np.ascontiguousarray(b), pr, pc))
                    n_ex += 1
                res["puzzle_indices"].append(n_ex)
                res["puzzle_identifiers"].append(ids[name])
            res["group_indices"].append(len(res["puzzle_identifiers"]))
        for k, v in res.items():
            v = np.stack(v, 0) if k in ("inputs", "labels") else np.array(v, dtype=np.int32)
            np.save(d / f"all__{k}.npy", v)
        meta = {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 12, "seq_len": 900,
                "num_puzzle_identifiers": n_ids, "total_groups": len(groups),
                "mean_puzzle_examples": n_ex / len(res["puzzle_identifiers"]),
                "total_puzzles": len(res["puzzle_identifiers"]), "sets": ["all"]}
        with open(d / "dataset.json", "w") as f:
            json.dump(meta, f)
    inv = {v: k for k, v in ids.items()}
    with open(out / "identifiers.json", "w") as f:
        json.dump([inv.get(i, "<blank>") for i in range(n_ids)], f)
    with open(out / "test_puzzles.json", "w") as f:
        json.dump(test_puzzles, f)


def _grid(rng, h, w, colours):
    return rng.choice(colours, size=(h, w)).tolist()


def synthetic_subsets(seed: int) -> dict[str, tuple[dict, dict | None]]:
    """{subset: (challenges, solutions or None)} with awkward cases."""
    rng = np.random.default_rng(seed)
    C = np.arange(10)

    def task(pairs, tests, test_first=False):
        train = [{"input": a, "output": b} for a, b in pairs]
        test = [{"input": a} for a, _ in tests]
        t = {"test": test, "train": train} if test_first else {"train": train, "test": test}
        return t, [b for _, b in tests]

    tasks = {}
    sym = rng.integers(0, 3, (5, 5))
    sym = np.maximum(sym, sym.T).tolist()
    tasks["sym_T"] = task([(sym, sym), (sym, sym)], [(sym, sym)])  # transpose-symmetric, duplicated pairs
    a, b = [[1, 0], [0, 2]], [[2, 0], [0, 1]]
    tasks["swap"] = task([(a, b), (b, a)], [(a, b)])  # colour swap maps the multiset onto itself
    z = [[0, 0], [0, 0]]
    tasks["zeros"] = task([(z, z)], [(z, [[0]])])  # at most 8 versions: "not full"
    two = _grid(rng, 3, 4, [0, 5])
    tasks["two_col"] = task([(two, two)], [(_grid(rng, 4, 3, [0, 5]), _grid(rng, 2, 2, [0, 5]))])
    wide = _grid(rng, 2, 30, C)
    tasks["wide"] = task([(wide, _grid(rng, 30, 1, C)), (_grid(rng, 30, 30, C), _grid(rng, 1, 1, C))],
                         [(_grid(rng, 29, 28, C), _grid(rng, 3, 30, C))])
    for k in range(4):
        h, w = rng.integers(1, 12, 2)
        tasks[f"rand{k}"] = task([(_grid(rng, h, w, C[: 3 + k]), _grid(rng, w, h, C)) for _ in range(1 + k)],
                                 [(_grid(rng, h, w, C), _grid(rng, h, h, C)) for _ in range(1 + k % 2)],
                                 test_first=(k % 2 == 1))
    rot = np.array(_grid(rng, 4, 4, [0, 3, 7]))
    rot4 = [rot, np.rot90(rot), np.rot90(rot, 2), np.rot90(rot, 3)]
    tasks["rot_multiset"] = task([(g.tolist(), g.T.tolist()) for g in rot4], [(rot.tolist(), rot.tolist())])

    names = list(tasks)
    split = {"alpha": names[:5], "evalx": names[5:8], "beta": names[8:]}
    out = {}
    for subset, ids in split.items():
        chal = {i: tasks[i][0] for i in ids}
        sols = {i: tasks[i][1] for i in ids}
        out[subset] = (chal, None if subset == "beta" else sols)  # beta: dummy outputs
    return out


def _write_inputs(root: Path, subsets) -> str:
    root.mkdir(parents=True, exist_ok=True)
    for name, (chal, sols) in subsets.items():
        (root / f"arc-agi_{name}_challenges.json").write_text(json.dumps(chal))
        if sols is not None:
            (root / f"arc-agi_{name}_solutions.json").write_text(json.dumps(sols))
    return str(root / "arc-agi")


def _same_tree(a: Path, b: Path) -> None:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb
    for rel in fa:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"


@pytest.mark.parametrize("seed,num_aug,start,order,test2", [
    (42, 24, 1, ["alpha", "evalx", "beta"], "your_test_set"),
    (7, 12, 3, ["beta", "alpha", "evalx"], "beta"),  # two test sets, the dummy-output one included
    (0, 0, 1, ["alpha", "evalx", "beta"], "your_test_set"),  # no augmentation at all
])
def test_matches_reference(tmp_path, seed, num_aug, start, order, test2):
    prefix = _write_inputs(tmp_path / "in", synthetic_subsets(seed))
    ref = tmp_path / "ref"
    reference_build(prefix, order, {"evalx", test2}, ref, seed=seed, num_aug=num_aug, start=start)
    ours = tmp_path / "ours"
    summary = build_dataset(BuildConfig(
        output_dir=ours, input_file_prefix=prefix, subsets=order, test_set_name="evalx", test_set_name2=test2,
        seed=seed, num_aug=num_aug, puzzle_identifiers_start=start, quiet=True))
    _same_tree(ref, ours)
    if num_aug:
        assert "zeros" in summary["not_full"]  # the all-zero task cannot reach num_aug + 1
