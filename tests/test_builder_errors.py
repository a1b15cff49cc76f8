"""Bad input -> `error: <one line naming file, task, example>`, exit code 2, nothing written.

Each case runs `python -m dataset_builder` in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOOD_GRID = [[1, 2], [3, 4]]


def good_task():
    return {"train": [{"input": GOOD_GRID, "output": GOOD_GRID}], "test": [{"input": GOOD_GRID}]}


def write(root: Path, subset: str, challenges, solutions=None, raw: str | None = None) -> Path:
    path = root / f"arc-agi_{subset}_challenges.json"
    path.write_text(raw if raw is not None else json.dumps(challenges))
    if solutions is not None:
        (root / f"arc-agi_{subset}_solutions.json").write_text(json.dumps(solutions))
    return path


def run(root: Path, *extra):
    out = root / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "dataset_builder",
                           "--input-file-prefix", str(root / "arc-agi"),
                           "--output-dir", str(out), "--num-aug", "2", "--quiet", *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    return proc, out


def assert_error(proc, out: Path, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".out.")]  # no temp dirs


def with_train_input(grid):
    t = good_task()
    t["train"] = [{"input": GOOD_GRID, "output": GOOD_GRID}] * 2 + [{"input": grid, "output": GOOD_GRID}]
    return {"abc": t}


GRID_CASES = {
    "non_rectangular": ([[0] * 5] * 3 + [[0] * 4],
                        "row 3 has 4 cells, expected 5 (grid must be rectangular)"),
    "too_tall": ([[1, 2]] * 31, "grid is 31x2, larger than 30x30"),
    "too_wide": ([[1] * 31], "grid is 1x31, larger than 30x30"),
    "empty": ([], "grid is empty"),
    "empty_row": ([[]], "grid is empty"),
    "value_10": ([[1, 10]], "row 0 col 1: value 10 outside 0-9"),
    "negative": ([[0], [-1]], "row 1 col 0: value -1 outside 0-9"),
    "float": ([[1, 2.5]], "row 0 col 1: 2.5 is a float, not an integer colour 0-9"),
    "integral_float": ([[1.0]], "row 0 col 0: 1.0 is a float"),
    "bool": ([[1, True]], "row 0 col 1: true is a boolean, not an integer colour 0-9"),
    "all_bool": ([[True]], "row 0 col 0: true is a boolean"),
    "string": ([["3"]], "row 0 col 0: \"3\" is a string"),
    "null": ([[None]], "row 0 col 0: null, not an integer colour 0-9"),
    "not_a_grid": (7, "expected a grid (list of rows), got int"),
    "row_not_list": ([1, 2], "row 0 is int, expected a list of cells"),
    "three_d": ([[[1]]], "row 0 col 0: [1] is a list"),
    "huge_int": ([[10**30]], "row 0 col 0: value 1000000000000000000000000000000 outside 0-9"),
}
# One subprocess run per kind of mistake; the other grid cases run in-process (same code).
SUBPROCESS_CASES = ["non_rectangular", "too_tall", "empty", "value_10", "float", "bool"]


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_grid(tmp_path, case):
    grid, message = GRID_CASES[case]
    path = write(tmp_path, "tr", with_train_input(grid), {"abc": [GOOD_GRID]})
    proc, out = run(tmp_path, "--subsets", "tr", "--test-set-name", "tr")
    assert_error(proc, out, f"{path}: task 'abc' train[2].input: {message}")


@pytest.mark.parametrize("case", sorted(set(GRID_CASES) - set(SUBPROCESS_CASES)))
def test_bad_grid_in_process(tmp_path, case, capsys):
    from dataset_builder.__main__ import main

    grid, message = GRID_CASES[case]
    path = write(tmp_path, "tr", with_train_input(grid), {"abc": [GOOD_GRID]})
    out = tmp_path / "out"
    rc = main(["--input-file-prefix", str(tmp_path / "arc-agi"), "--output-dir", str(out), "--subsets", "tr",
               "--test-set-name", "tr", "--num-aug", "2", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: {path}: task 'abc' train[2].input: {message}"), err
    assert err.count("\n") == 1 and not out.exists()


# the fast path is only used for text without booleans (may_hold_bools), so "bool" runs slow only
@pytest.mark.parametrize(("case", "fast"), [(c, f) for c in sorted(GRID_CASES) for f in (False, True)
                                            if not (c == "bool" and f)])
def test_check_grid_fast_and_slow_paths_agree(case, fast):
    from dataset_builder.validate import BuildError, check_grid

    grid, message = GRID_CASES[case]
    with pytest.raises(BuildError) as e:
        check_grid(grid, "where", fast=fast)
    assert str(e.value).startswith(f"where: {message}")


def test_may_hold_bools():
    from dataset_builder.validate import may_hold_bools

    assert may_hold_bools('{"a": [[1, true]]}') and may_hold_bools(b"[false]")
    assert not may_hold_bools('{"a": [[1, 2]]}')


def test_unreadable_file(tmp_path):
    (tmp_path / "arc-agi_tr_challenges.json").mkdir()  # a directory where the file should be
    proc, out = run(tmp_path, "--subsets", "tr")
    assert_error(proc, out, "arc-agi_tr_challenges.json: cannot read")


def test_not_json(tmp_path):
    path = write(tmp_path, "tr", None, raw='{"abc": {"train": [}')
    proc, out = run(tmp_path, "--subsets", "tr")
    assert_error(proc, out, f"{path}: not valid JSON: ", "line 1 column")


def test_not_an_object(tmp_path):
    path = write(tmp_path, "tr", [good_task()])
    proc, out = run(tmp_path, "--subsets", "tr")
    assert_error(proc, out, f"{path}: expected a JSON object mapping task ids to tasks, got list")


@pytest.mark.parametrize("key", ["train", "test"])
def test_missing_split(tmp_path, key):
    task = good_task()
    del task[key]
    path = write(tmp_path, "tr", {"abc": task})
    proc, out = run(tmp_path, "--subsets", "tr")
    assert_error(proc, out, f"{path}: task 'abc': missing '{key}'")


def test_missing_output_in_train(tmp_path):
    task = good_task()
    task["train"].append({"input": GOOD_GRID})
    path = write(tmp_path, "tr", {"abc": task})
    proc, out = run(tmp_path, "--subsets", "tr")
    assert_error(proc, out, f"{path}: task 'abc' train[1]: missing 'output'")


def test_bad_test_output_in_solutions(tmp_path):
    write(tmp_path, "ev", {"abc": good_task()}, {"abc": [[[1, 2], [3]]]})
    proc, out = run(tmp_path, "--subsets", "ev", "--test-set-name", "ev")
    sols = tmp_path / "arc-agi_ev_solutions.json"
    assert_error(proc, out, f"{sols}: task 'abc' solution[0]: row 1 has 1 cells, expected 2")


def test_solution_count_mismatch(tmp_path):
    write(tmp_path, "ev", {"abc": good_task()}, {"abc": [GOOD_GRID, GOOD_GRID]})
    proc, out = run(tmp_path, "--subsets", "ev", "--test-set-name", "ev")
    assert_error(proc, out, "arc-agi_ev_solutions.json: task 'abc': 2 solutions for 1 test inputs")


def test_solutions_missing_task(tmp_path):
    write(tmp_path, "ev", {"abc": good_task(), "xyz": good_task()}, {"abc": [GOOD_GRID]})
    proc, out = run(tmp_path, "--subsets", "ev", "--test-set-name", "ev")
    assert_error(proc, out, "arc-agi_ev_solutions.json: task 'xyz' missing")


def test_duplicate_task_across_subsets(tmp_path):
    write(tmp_path, "a", {"abc": good_task()})
    path_b = write(tmp_path, "b", {"zzz": good_task(), "abc": good_task()})
    proc, out = run(tmp_path, "--subsets", "a", "b")
    assert_error(proc, out, f"{path_b}: task 'abc' is also in subset 'a'")


def test_missing_subset_file(tmp_path):
    write(tmp_path, "a", {"abc": good_task()})
    proc, out = run(tmp_path, "--subsets", "a", "nosuch")
    assert_error(proc, out, f"{tmp_path / 'arc-agi_nosuch_challenges.json'}: no such file (subset 'nosuch')")


def test_separator_in_task_id(tmp_path):
    path = write(tmp_path, "a", {"ab|||t1": good_task()})
    proc, out = run(tmp_path, "--subsets", "a")
    assert_error(proc, out, f"{path}: task id 'ab|||t1' must not contain '|||'")


def test_missing_kaggle_dir(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "dataset_builder", "--kaggle-dir", str(tmp_path / "nope"),
                           "--output-dir", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert_error(proc, out, "nope: no such directory (--kaggle-dir)")


def test_empty_example_list(tmp_path):
    task = good_task()
    task["train"] = []
    path = write(tmp_path, "a", {"abc": task})
    proc, out = run(tmp_path, "--subsets", "a")
    assert_error(proc, out, f"{path}: task 'abc' train: no examples")
