"""The evaluation in rounds (trm.anytime): a kill, a crash or a deadline keeps every finished round.

    .venv/bin/pytest -q tests/test_anytime.py

Hermetic: toy tasks (two with one test input, one with two) built with the builder's CLI at a
num_aug that gives several rounds, and a tiny untrained TRM saved as a kit checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trm import anytime, evaluate, ttt
from trm.data import load_split
from trm.submission import validate_submission

REPO = Path(__file__).resolve().parents[1]
TASKS = {
    "aaaa0001": {"train": [{"input": [[1, 0], [0, 1]], "output": [[2, 0], [0, 2]]}],
                 "test": [{"input": [[1, 1], [0, 3]]}]},
    "bbbb0002": {"train": [{"input": [[1, 2, 3]], "output": [[3, 2, 1]]}],
                 "test": [{"input": [[7, 8]]}, {"input": [[1], [2]]}]},
    "cccc0003": {"train": [{"input": [[4, 5], [6, 7]], "output": [[4, 4], [6, 6]]}],
                 "test": [{"input": [[5, 6, 7], [1, 2, 3]]}]},
}
NUM_AUG = 40  # 41 versions a task at most: rounds 1, 1, 2, 4, 8, 16, then the rest
TINY = dict(hidden_size=16, num_heads=1, expansion=2.0, n_layers=1, n_outer_cycles=1, n_latent_steps=1,
            halt_max_steps=2, puzzle_emb_ndim=16, puzzle_emb_len=1, forward_dtype="float32")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(folder, dataset, checkpoint, challenges file, solutions file): solutions are the inputs
    themselves, so a labelled score exists (an untrained model rarely matches it: fine)."""
    from trm.checkpoint import save_checkpoint
    from trm.model import TRM, ModelConfig

    d = tmp_path_factory.mktemp("anytime")
    (d / "challenges.json").write_text(json.dumps(TASKS))
    labels = {t: [p["input"] for p in v["test"]] for t, v in TASKS.items()}
    (d / "solutions.json").write_text(json.dumps(labels))
    ttt.build_ttt_dataset(d / "challenges.json", d / "data", num_aug=NUM_AUG, repo=REPO)
    n_ids = len(json.loads((d / "data" / "identifiers.json").read_text()))
    torch.manual_seed(0)
    model = TRM(ModelConfig(**TINY, num_puzzle_identifiers=n_ids))
    save_checkpoint(d / "ckpt", model, dataset_dir=d / "data", meta={"step": 1})
    return d


def _cli(setup: Path, out: str, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    args = [sys.executable, "-m", "trm.evaluate", "--checkpoint", str(setup / "ckpt"), "--data",
            str(setup / "data"), "--output-dir", str(setup / out), "--batch-size", "8", "--device", "cpu",
            "--pictures", "0", "--challenges", str(setup / "challenges.json"), "--solutions",
            str(setup / "solutions.json"), *extra]
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _read(p: Path):
    return json.loads(p.read_text())


def test_schedule_covers_every_row_once_and_round_one_is_each_input_as_given(setup):
    split = load_split(setup / "data", "test")
    rounds = anytime.schedule(split, "anytime")
    rows = np.concatenate(rounds)
    assert sorted(rows.tolist()) == list(range(split.num_examples))  # each row exactly once
    versions = anytime.row_versions(split)
    n_versions = int(versions.max()) + 1
    bounds = anytime.version_bounds(n_versions, "anytime")
    assert len(rounds) == len(bounds) - 1 >= 6
    # every round takes the same versions of every task: round r holds versions [b_r, b_r+1)
    for r, (lo, hi) in zip(rounds, zip(bounds[:-1], bounds[1:])):
        assert set(versions[r].tolist()) == set(range(lo, hi)) and list(r) == sorted(r)
    # round 1: one row per test input of the data (the task as given), before any second version
    n_inputs = sum(len(t["test"]) for t in TASKS.values())
    assert len(rounds[0]) == n_inputs
    names = json.loads((setup / "data" / "identifiers.json").read_text())
    ids = split.example_puzzle_ids()
    assert {names[i] for i in ids[rounds[0]]} == set(TASKS)  # bare ids: the identity versions
    # later rounds grow by doubling, then by MAX_ROUND_VERSIONS versions
    steps = np.diff(bounds).tolist()
    assert steps[:5] == [1, 1, 2, 4, 8] and max(steps) <= anytime.MAX_ROUND_VERSIONS
    assert [len(r) for r in anytime.schedule(split, "one")] == [split.num_examples]


@pytest.mark.parametrize("batch", [3, 8, 64])
def test_rounds_end_on_whole_batches_and_still_cover_their_versions(setup, batch):
    """With the evaluation's batch, each round but the last is whole batches (no more batches than one
    pass), and by the end of round r every input has its versions below that round's bound."""
    split = load_split(setup / "data", "test")
    rounds = anytime.schedule(split, "anytime", batch)
    n = split.num_examples
    assert sorted(np.concatenate(rounds).tolist()) == list(range(n))
    assert all(len(r) % batch == 0 for r in rounds[:-1])
    assert sum(-(-len(r) // batch) for r in rounds) == -(-n // batch)
    versions = anytime.row_versions(split)
    bounds = anytime.version_bounds(int(versions.max()) + 1, "anytime")
    seen: set[int] = set()
    for r in rounds:
        seen |= set(r.tolist())
        covered = [b for b in bounds[1:] if set(np.flatnonzero(versions < b).tolist()) <= seen]
        assert covered, "a round that completes no version"  # every round adds a whole version
    assert len(rounds) <= len(bounds) - 1


def _votes_per_input(split, rows: np.ndarray) -> list[int]:
    """Rows of `rows` per test input (its task and test index), read from the split's indices."""
    pi, gi = np.asarray(split.puzzle_indices), np.asarray(split.group_indices)
    puzzle = np.repeat(np.arange(len(pi) - 1), np.diff(pi))
    group = np.repeat(np.arange(len(gi) - 1), np.diff(gi))[puzzle]
    keys = list(zip(group.tolist(), (np.arange(len(puzzle)) - pi[puzzle]).tolist()))
    counts = {k: 0 for k in keys}
    for r in rows.tolist():
        counts[keys[r]] += 1
    return list(counts.values())


def test_rounds_end_exactly_where_one_pass_ends(setup):
    """After the last round the votes, ties, attempts and scores are the one-pass evaluation's: the
    vote takes the finished rows in dataset order, never in round order."""
    one, rounds = _cli(setup, "one"), _cli(setup, "rounds", "--rounds", "anytime")
    assert one.returncode == 0 and rounds.returncode == 0, rounds.stderr
    assert (setup / "one/submission.json").read_bytes() == (setup / "rounds/submission.json").read_bytes()
    assert (setup / "one/per_task.csv").read_bytes() == (setup / "rounds/per_task.csv").read_bytes()
    m1, m2 = _read(setup / "one/metrics.json"), _read(setup / "rounds/metrics.json")
    info = m2.pop("rounds")
    assert m1 == m2
    assert info["complete"] and info["done"] == info["total"] and info["stopped_by"] is None
    assert rounds.stdout.count("evaluation round ") == info["total"]


def test_a_kill_keeps_the_finished_rounds_and_resume_finishes_them(setup):
    killed = _cli(setup, "killed", "--rounds", "anytime", env={anytime.KILL_ENV: "2"})
    assert killed.returncode == -9  # SIGKILL: no cleanup ran
    sub = _read(setup / "killed/submission.json")
    assert validate_submission(sub, TASKS) == []
    metrics = _read(setup / "killed/metrics.json")
    assert metrics["rounds"]["done"] == 2 and not metrics["rounds"]["complete"]
    assert metrics["tasks_without_votes"] == []  # round 1 voted on every input
    split = load_split(setup / "data", "test")
    two = np.concatenate(anytime.schedule(split, "anytime", 8)[:2])  # the CLI's batch
    assert metrics["votes_per_input"]["min"] == min(_votes_per_input(split, two)) >= 2
    state = _read(setup / "killed/rounds/state.json")
    assert state["rounds_done"] == 2 and len(state["round_seconds"]) == 2

    resumed = _cli(setup, "killed", "--rounds", "anytime", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert _read(setup / "killed/metrics.json")["rounds"]["resumed"] == 2
    assert _cli(setup, "one-again").returncode == 0
    again = (setup / "one-again/submission.json").read_bytes()
    assert (setup / "killed/submission.json").read_bytes() == again


def test_a_kill_before_the_first_round_writes_no_submission(setup):
    killed = _cli(setup, "early", "--rounds", "anytime", env={anytime.KILL_ENV: "0"})
    assert killed.returncode == -9 and not (setup / "early/submission.json").exists()


def test_resume_refuses_another_evaluations_state(setup):
    _cli(setup, "other", "--rounds", "anytime", env={anytime.KILL_ENV: "1"})
    r = _cli(setup, "other", "--rounds", "anytime", "--resume", "--batch-size", "4")
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: --resume:") and "batch_size" in lines[0]


@pytest.mark.parametrize("bad", [["--resume"], ["--deadline", "1"],
                                 ["--rounds", "anytime", "--ensemble", "x"]])
def test_round_options_without_their_setting_are_refused(setup, bad):
    r = _cli(setup, "bad", *bad)
    assert r.returncode == 2 and ("--rounds anytime" in r.stderr), r.stderr


class FakeClock:
    """Time that moves only when the evaluation predicts: `per_row` seconds a row."""

    def __init__(self, per_row: float):
        self.now, self.per_row = 1000.0, per_row

    def __call__(self) -> float:
        return self.now


def test_deadline_stops_before_a_round_that_would_not_finish(setup, monkeypatch, capsys):
    """A clock that moves 1 s per predicted row: the evaluation starts no round it cannot finish by the
    deadline (rate measured on its own rounds), and records why it stopped."""
    from trm.checkpoint import load_checkpoint

    model, _ = load_checkpoint(setup / "ckpt", map_location="cpu")
    clock = FakeClock(per_row=1.0)
    real = evaluate.predict

    def timed(*a, **k):
        out = real(*a, **k)
        clock.now += clock.per_row * len(out)
        return out

    monkeypatch.setattr(evaluate, "predict", timed)
    split = load_split(setup / "data", "test")
    rounds = anytime.schedule(split, "anytime", 8)
    sizes = [len(r) for r in rounds]
    budget = sum(sizes[:4]) + sizes[4] // 2  # four rounds fit, the fifth does not
    metrics = anytime.run_rounds(model, setup / "data", setup / "deadline", kind="anytime", fingerprint={},
                                 global_batch_size=8, device="cpu", deadline=clock.now + budget,
                                 challenges=TASKS, n_pictures=0, clock=clock)
    info = metrics["rounds"]
    assert info["done"] == 4 and info["stopped_by"].startswith("deadline: round 5")
    assert clock.now <= 1000.0 + budget
    assert _read(setup / "deadline/metrics.json")["rounds"]["stopped_by"] == info["stopped_by"]
    assert validate_submission(_read(setup / "deadline/submission.json"), TASKS) == []


def test_progress_lines_at_least_every_interval(capsys):
    clock = FakeClock(per_row=0)
    p = anytime.Progress(rows_total=100, rounds_total=3, deadline=clock.now + 600, every_s=60, clock=clock)
    p.round_started(0, 0)
    for i in range(1, 9):  # a batch every 25 s for 200 s: lines at 75 and 150 s (>= 60 s apart)
        clock.now += 25
        p(i * 10)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0] == "evaluation: round 1/3, 30/100 rows, 0.4 rows/s, 8.8 min to the deadline"


# --------------------------------------------------------------------------- the notebook's run

def _notebook_run(setup: Path, tmp_path: Path, monkeypatch, **params) -> tuple[dict, dict]:
    """ttt.run as the notebook calls it, on TASKS as hidden test tasks (no attached file knows them)."""
    comp = tmp_path / "input" / "comp"
    comp.mkdir(parents=True)
    (comp / "arc-agi_test_challenges.json").write_text(json.dumps(TASKS))
    (comp / "arc-agi_evaluation_challenges.json").write_text("{}")
    monkeypatch.delenv(ttt.RERUN_ENV, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ctx = ttt.start(str(tmp_path / "input"), str(tmp_path / "working"))
    p = ttt.TTTParams(device="cpu", num_aug=NUM_AUG, global_batch_size=4, lr_warmup_steps=1, max_steps=2,
                      log_interval=1, eval_batch_size=8, budget_hours=1.0, safety_minutes=0.0,
                      install_wheels=False, weights_dir=str(setup / "ckpt"), scratch_dir=str(tmp_path / "s"),
                      **params)
    ttt.install(ctx, p)
    report = ttt.run(ctx, p)  # never raises once the fallback is written: the report says what happened
    return report, json.loads((tmp_path / "working" / "submission.json").read_text())


@pytest.mark.slow
def test_notebook_killed_mid_evaluation_submits_the_finished_rounds(setup, tmp_path, monkeypatch, capsys):
    report, sub = _notebook_run(setup, tmp_path, monkeypatch, eval_kill_after_rounds=2)
    assert report["status"].startswith("degraded: the evaluation ended with exit code -9 after 2/")
    assert report["tasks_from_model"] == len(TASKS) and report["tasks_fallback_ids"] == []
    assert report["eval"]["rounds"]["done"] == 2 and report["eval"]["votes_per_input"]["min"] >= 2
    assert validate_submission(sub, TASKS) == []
    fallback = ttt.fallback_submission(TASKS)
    assert all(sub[t] != fallback[t] for t in TASKS)  # the model's attempts, not the fallback's
    out = capsys.readouterr().out
    assert "THE RUN DID NOT COMPLETE" in out and report["status"] in out
    assert json.loads((tmp_path / "working" / "ttt_report.json").read_text())["status"] == report["status"]


@pytest.mark.slow
def test_notebook_killed_before_the_first_round_keeps_the_fallback(setup, tmp_path, monkeypatch):
    report, sub = _notebook_run(setup, tmp_path, monkeypatch, eval_kill_after_rounds=0)
    assert report["status"].startswith("failed: RuntimeError: the evaluation ended (exit code -9) before")
    assert sub == ttt.fallback_submission(TASKS)


@pytest.mark.slow
def test_notebook_with_a_deadline_too_short_for_the_evaluation_submits_the_rounds_that_fit(
        setup, tmp_path, monkeypatch):
    """An evaluation 600 s a row (its clock runs ahead, trm.anytime.RowClock; nothing sleeps) against
    a 1-hour budget: round 1 (one row per test input) fits, the next would not; the notebook submits
    round 1's votes on every task and says why it stopped."""
    monkeypatch.setenv(anytime.SLOW_ENV, "600")
    report, sub = _notebook_run(setup, tmp_path, monkeypatch)
    rounds = report["eval"]["rounds"]
    assert rounds["done"] == 1 and rounds["stopped_by"].startswith("deadline: round 2")
    assert report["status"].startswith("degraded: deadline: round 2")
    assert report["tasks_from_model"] == len(TASKS) and validate_submission(sub, TASKS) == []
