"""The public placeholder vs hidden test tasks, decided from the attached files (trm.kaggle_input
id_sources; trm.ttt start/Context/_budget): an id is public when any attached *_solutions.json or
*_challenges.json other than the test file holds it.

    .venv/bin/python -m pytest -q tests/test_placeholder.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trm import kaggle_input as kin
from trm import ttt

TASK = {"train": [{"input": [[1, 0]], "output": [[0, 1]]}], "test": [{"input": [[2, 0]]}]}
TRAIN_IDS = ["aaaa0001", "aaaa0002", "aaaa0003"]
EVAL_IDS = ["eeee0001", "eeee0002"]
TRAIN_CH, TRAIN_SOL = "arc-agi_training_challenges.json", "arc-agi_training_solutions.json"


def comp(root: Path, test_ids: list[str], files: dict[str, list[str]]) -> Path:
    """A competition folder: the test file holds test_ids; each other file the ids given."""
    d = root / "input" / "competitions" / "arc-prize"
    d.mkdir(parents=True)
    (d / kin.TEST_CHALLENGES).write_text(json.dumps({t: TASK for t in test_ids}))
    for name, ids in files.items():
        body = {t: [[[0, 1]]] for t in ids} if name.endswith("_solutions.json") else {t: TASK for t in ids}
        (d / name).write_text(json.dumps(body))
    return d


def start(root: Path, monkeypatch) -> ttt.Context:
    monkeypatch.delenv(ttt.RERUN_ENV, raising=False)
    monkeypatch.setenv("TRM_TTT_SCRATCH", str(root / "scratch"))
    return ttt.start(str(root / "input"), str(root / "working"))


def budget(ctx: ttt.Context) -> dict:
    p = ttt.TTTParams(budget_hours=12.0, safety_minutes=30.0, check_minutes=20.0, check_tasks=8)
    return ttt._budget(ctx, p, ctx.deadline(p))


def test_no_solutions_attached_but_ids_in_the_evaluation_challenges(tmp_path, monkeypatch):
    """Without any *_solutions.json the placeholder is still recognised: its ids are in the attached
    evaluation challenges, which are public; the report says which file knew them."""
    comp(tmp_path, EVAL_IDS, {kin.EVAL_CHALLENGES: EVAL_IDS, TRAIN_CH: TRAIN_IDS})
    ctx = start(tmp_path, monkeypatch)
    assert ctx.placeholder and ctx.id_sources == dict.fromkeys(EVAL_IDS, kin.EVAL_CHALLENGES)
    report = budget(ctx)
    assert report["kind"] == "short check" and report["test_ids_known"] is True
    assert report["test_ids_known_by"] == {kin.EVAL_CHALLENGES: len(EVAL_IDS)}
    assert report["test_ids_unknown"] == 0


def test_challenges_only_across_files(tmp_path, monkeypatch):
    """Only challenges files attached, the test ids spread over training and evaluation: placeholder,
    each id credited to the file holding it."""
    test_ids = TRAIN_IDS[:2] + EVAL_IDS[:1]
    comp(tmp_path, test_ids, {TRAIN_CH: TRAIN_IDS, kin.EVAL_CHALLENGES: EVAL_IDS})
    ctx = start(tmp_path, monkeypatch)
    assert ctx.placeholder
    assert budget(ctx)["test_ids_known_by"] == {TRAIN_CH: 2, kin.EVAL_CHALLENGES: 1}


def test_a_solutions_file_is_credited_before_a_challenges_file(tmp_path):
    d = comp(tmp_path, TRAIN_IDS, {TRAIN_CH: TRAIN_IDS, TRAIN_SOL: TRAIN_IDS})
    test = json.loads((d / kin.TEST_CHALLENGES).read_text())
    assert kin.id_sources(d, test) == dict.fromkeys(TRAIN_IDS, TRAIN_SOL)


def test_an_id_in_no_file_makes_the_test_file_hidden(tmp_path, monkeypatch):
    """One id no attached file knows is enough: hidden tasks, the full budget."""
    comp(tmp_path, [*TRAIN_IDS, "ffff0009"], {TRAIN_CH: TRAIN_IDS, TRAIN_SOL: TRAIN_IDS})
    ctx = start(tmp_path, monkeypatch)
    assert not ctx.placeholder and ctx.id_sources["ffff0009"] is None
    report = budget(ctx)
    assert report["kind"] == "full" and report["test_ids_known"] is False
    assert report["test_ids_unknown"] == 1 and report["test_ids_known_by"] == {TRAIN_SOL: len(TRAIN_IDS)}


@pytest.mark.parametrize("extra", [{}, {"sample_submission.json": None}], ids=["public-files", "+sample"])
def test_hidden_ids_stay_hidden(tmp_path, monkeypatch, extra):
    """The rerun's hidden set, every public file attached: no id known. The test file itself is never
    a source, nor is any file that is not a *_solutions.json / *_challenges.json."""
    hidden = ["hid00001", "hid00002", "hid00003"]
    d = comp(tmp_path, hidden, {TRAIN_CH: TRAIN_IDS, TRAIN_SOL: TRAIN_IDS, kin.EVAL_CHALLENGES: EVAL_IDS,
                                kin.EVAL_SOLUTIONS: EVAL_IDS})
    for name in extra:  # holds the hidden ids (Kaggle's sample submission names every test task)
        (d / name).write_text(json.dumps({t: [] for t in hidden}))
    ctx = start(tmp_path, monkeypatch)
    assert not ctx.placeholder and set(ctx.id_sources.values()) == {None}
    report = budget(ctx)
    assert report["kind"] == "full" and report["test_ids_known_by"] == {}
    assert report["test_ids_unknown"] == len(hidden)
    assert not kin.is_placeholder(d, json.loads((d / kin.TEST_CHALLENGES).read_text()))
