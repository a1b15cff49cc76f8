"""submission.json writer, validator and scorer (trm.submission).

    .venv/bin/pytest -q tests/test_submission.py
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

from trm.atomic import write_json_atomic
from trm.submission import (
    build_submission,
    check_submission,
    fallback_attempts,
    fallback_submission,
    grid_problem,
    main,
    pick_attempts,
    score_submission,
    validate_submission,
)

CHALLENGES = {
    "aaa": {"train": [], "test": [{"input": [[1, 2], [3, 4]]}]},
    "bbb": {"train": [], "test": [{"input": [[0]]}, {"input": [[5, 5, 5]]}]},
}
SOLUTIONS = {"aaa": [[[4, 3], [2, 1]]], "bbb": [[[1]], [[5], [5], [5]]]}


def good() -> dict:
    return {
        "aaa": [{"attempt_1": [[4, 3], [2, 1]], "attempt_2": [[1]]}],
        "bbb": [{"attempt_1": [[0]], "attempt_2": [[1]]}, {"attempt_1": [[5, 5, 5]], "attempt_2": [[7]]}],
    }


def assert_valid_and_distinct(sub: dict, challenges: dict) -> None:
    errors, warnings = check_submission(sub, challenges)
    assert errors == [], errors
    assert not [w for w in warnings if "identical" in w], warnings


def test_good_submission_is_valid_and_scores():
    assert check_submission(good(), CHALLENGES) == ([], [])
    res = score_submission(good(), SOLUTIONS)
    assert res["n_test_outputs"] == 3 and res["n_correct"] == 2 and res["n_tasks"] == 2
    assert res["score"] == pytest.approx(2 / 3)
    assert res["per_task"] == {"aaa": [1], "bbb": [1, 0]}


def _broken(mutate) -> list[str]:
    sub = good()
    mutate(sub)
    return validate_submission(sub, CHALLENGES)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s.pop("aaa"), "aaa: missing task"),
        (lambda s: s.update(zzz=[]), "zzz: extra task"),
        (lambda s: s["bbb"].pop(), "bbb: 1 entries, expected 2"),
        (lambda s: s.update(aaa={"attempt_1": [[1]]}), "aaa: expected a list of 1 dicts"),
        (lambda s: s["aaa"].__setitem__(0, [[1]]), "aaa[0]: expected a dict"),
        (lambda s: s["aaa"][0].pop("attempt_2"), "aaa[0]: missing attempt_2"),
        (lambda s: s["aaa"][0].update(attempt_1=5), "aaa[0].attempt_1: not a list of lists"),
        (lambda s: s["aaa"][0].update(attempt_1=[1, 2]), "aaa[0].attempt_1: not a list of lists"),
        (lambda s: s["aaa"][0].update(attempt_1=[[1, 2], [3]]), "aaa[0].attempt_1: ragged rows"),
        (lambda s: s["aaa"][0].update(attempt_1=[]), "aaa[0].attempt_1: empty grid"),
        (lambda s: s["aaa"][0].update(attempt_1=[[]]), "aaa[0].attempt_1: empty grid"),
        (lambda s: s["aaa"][0].update(attempt_1=[[0]] * 31), "aaa[0].attempt_1: grid 31x1 exceeds 30x30"),
        (lambda s: s["aaa"][0].update(attempt_2=[[0] * 31]), "aaa[0].attempt_2: grid 1x31 exceeds 30x30"),
        (lambda s: s["bbb"][1].update(attempt_1=[[10]]), "bbb[1].attempt_1: cell (0,0) = 10 is outside 0-9"),
        (lambda s: s["bbb"][1].update(attempt_1=[[0, -1]]), "bbb[1].attempt_1: cell (0,1) = -1 is outside"),
        (lambda s: s["bbb"][1].update(attempt_1=[[1.0]]), "bbb[1].attempt_1: cell (0,0) = 1.0 is not an int"),
        (lambda s: s["bbb"][1].update(attempt_1=[[True]]),
         "bbb[1].attempt_1: cell (0,0) = True is not an int"),
        (lambda s: s["bbb"][1].update(attempt_1=[["3"]]), "bbb[1].attempt_1: cell (0,0) = '3' is not an int"),
    ],
)
def test_each_violation_is_reported(mutate, expected):
    errors = _broken(mutate)
    assert any(e.startswith(expected) for e in errors), errors


def test_every_violation_listed_not_just_the_first():
    sub = good()
    sub.pop("aaa")
    sub["bbb"][0]["attempt_1"] = []
    sub["bbb"][1]["attempt_2"] = [[11]]
    sub["extra"] = []
    errors = validate_submission(sub, CHALLENGES)
    assert len(errors) == 4, errors


def test_not_a_dict():
    assert validate_submission([], CHALLENGES)[0].startswith("submission is a list")


def test_identical_attempts_warn_but_are_valid():
    sub = good()
    sub["aaa"][0]["attempt_2"] = [[4, 3], [2, 1]]
    errors, warnings = check_submission(sub, CHALLENGES)
    assert errors == []
    assert any("aaa[0]: attempt_1 and attempt_2 are identical" in w for w in warnings)


def test_score_handles_missing_and_malformed_entries():
    sub = {"bbb": [{"attempt_2": [[1]]}, "junk"]}
    res = score_submission(sub, SOLUTIONS)
    assert res["per_task"] == {"aaa": [0], "bbb": [1, 0]}


@pytest.mark.parametrize(
    "grid",
    [[[1, 2], [3, 4]], [[0]], [[7]], [[3, 3], [3, 3]], [[1, 2, 1]], [[0] * 30] * 30,
     np.eye(3, dtype=np.uint8)],
)
def test_fallback_attempts_distinct_and_valid(grid):
    a1, a2 = fallback_attempts(grid)
    assert grid_problem(a1) is None and grid_problem(a2) is None
    assert a1 != a2
    assert a1 == np.asarray(grid).tolist()  # attempt 1 is the test input itself


@pytest.mark.parametrize("bad_input", [None, [], [[]], [[1, 2], [3]], [[12]]])
def test_fallback_for_an_invalid_test_input(bad_input):
    a1, a2 = fallback_attempts(bad_input)
    assert (a1, a2) == ([[0]], [[1]])


def test_fallback_keeps_a_given_first_attempt():
    # attempt 2 is the input itself when attempt 1 differs from it
    assert fallback_attempts([[1, 2]], first=[[9]]) == ([[9]], [[1, 2]])
    # else the first transform of the input that differs
    assert fallback_attempts([[1, 2]], first=[[1, 2]]) == ([[1, 2]], [[2, 1]])


def test_pick_attempts_skips_unusable_and_duplicates():
    empty = np.zeros((0, 0), np.uint8)
    big = np.zeros((31, 2), np.uint8)
    cands = [empty, np.array([[1]]), big, np.array([[1]]), np.array([[2]])]
    assert pick_attempts(cands, [[5]]) == (([[1]], [[2]]), ("vote", "vote"))
    assert pick_attempts([empty, np.array([[1]])], [[5]]) == (([[1]], [[5]]), ("vote", "fallback"))
    assert pick_attempts([], [[5, 6]]) == (([[5, 6]], [[6, 5]]), ("fallback", "fallback"))


def test_build_submission_completes_every_task_and_input():
    cands = {"aaa": [[np.array([[4, 3], [2, 1]])]], "unknown": [[np.array([[1]])]]}
    sub = build_submission(cands, CHALLENGES)
    assert list(sub) == ["aaa", "bbb"] and len(sub["bbb"]) == 2
    assert sub["aaa"][0]["attempt_1"] == [[4, 3], [2, 1]]
    assert_valid_and_distinct(sub, CHALLENGES)


def test_fallback_submission_on_competition_files(arc_data):
    """The notebook's first action: valid, distinct attempts, deterministic."""
    for name in ("arc-prize-2025/arc-agi_test_challenges.json",
                 "arc-prize-2025/arc-agi_evaluation_challenges.json"):
        challenges = json.loads((arc_data / name).read_text())
        sub = fallback_submission(challenges)
        assert_valid_and_distinct(sub, challenges)
        assert sub == fallback_submission(copy.deepcopy(challenges))


def test_write_json_atomic(tmp_path):
    p = write_json_atomic(tmp_path / "sub" / "submission.json", good())
    assert json.loads(p.read_text()) == good()
    assert [f.name for f in p.parent.iterdir()] == ["submission.json"]  # no temp files left


def test_cli_exit_codes_and_messages(tmp_path, capsys):
    ch = tmp_path / "challenges.json"
    so = tmp_path / "solutions.json"
    ok = tmp_path / "ok.json"
    bad = tmp_path / "bad.json"
    ch.write_text(json.dumps(CHALLENGES))
    so.write_text(json.dumps(SOLUTIONS))
    ok.write_text(json.dumps(good()))
    broken = good()
    broken["aaa"][0]["attempt_1"] = [[1, 2], [3]]
    broken.pop("bbb")
    bad.write_text(json.dumps(broken))

    assert main(["validate", str(ok), "--challenges", str(ch)]) == 0
    assert "VALID" in capsys.readouterr().out
    assert main(["validate", str(bad), "--challenges", str(ch)]) == 1
    out = capsys.readouterr().out
    assert "error: bbb: missing task" in out and "error: aaa[0].attempt_1: ragged rows" in out
    assert main(["score", str(ok), "--challenges", str(ch), "--solutions", str(so)]) == 0
    assert "0.6667 = 2/3" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "nope.json"), "--challenges", str(ch)]) == 1
    fb = tmp_path / "fb.json"
    assert main(["fallback", "--challenges", str(ch), "--output", str(fb)]) == 0
    assert_valid_and_distinct(json.loads(fb.read_text()), CHALLENGES)


def test_cli_as_module(tmp_path, repo_root):
    ch = tmp_path / "challenges.json"
    ch.write_text(json.dumps(CHALLENGES))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"aaa": []}))
    r = subprocess.run([sys.executable, "-m", "trm.submission", "validate", str(bad),
                        "--challenges", str(ch)],
                       cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 1
    assert "aaa: 0 entries, expected 1" in r.stdout and "bbb: missing task" in r.stdout
