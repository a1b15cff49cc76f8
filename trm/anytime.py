"""The evaluation in rounds ("anytime"): what it has predicted survives a kill, a crash or a deadline.

A 12-hour Kaggle rerun whose evaluation is killed at the deadline used to lose every prediction (the
evaluation wrote once, at the end). In rounds, every test input's first augmented versions are
predicted before any input's next ones, each finished round is saved, and the submission is voted
again from every finished row: a kill costs the round in progress, never the rounds before it.

Schedule (`schedule`). A test-split row is one augmented version of one test input; its *version*
is its puzzle's position within its group (task): 0 is the task as given (the builder writes the
identity first), then the accepted augmentations in order. Round r covers the versions
[b_r, b_r+1) of every task: "anytime" doubles the bounds 0, 1, 2, 4, 8, 16 (so round 1 puts one
vote on every test input at about 1/(num_aug + 1) of the evaluation's time), then adds
MAX_ROUND_VERSIONS versions a round, so no single round is a large share of the clock; "one" is
one round of every row (the classic evaluation). A round ends on a whole batch: it also takes the
first rows of the next versions that fill its last batch, so rounds cost no more batches than one
pass. Within a round rows keep dataset order.

Faithful at the end. The vote after a round takes every finished row in dataset row order (never in
round order), so after the last round the vote counts, the q sums, their ties and the submission are
exactly those of the one-round evaluation (tests/test_anytime.py).

State (`RoundStore`, under <output-dir>/rounds/): round_<r>.npz per finished round (the
Predictions arrays: enough to vote again) and state.json, written after the round's file, both
atomically (temp file + rename). state.json holds a fingerprint of the evaluation (checkpoint,
dataset, schedule, batch, early exit); `--resume` loads the finished rounds of a matching state and
runs the rest, and refuses a state made by another evaluation.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from trm.atomic import write_bytes_atomic, write_json_atomic

SCHEDULES = ("one", "anytime")
MAX_ROUND_VERSIONS = 16  # the doubling stops here: later rounds take this many versions of every task
STATE_FILE = "state.json"
KILL_ENV = "TRM_EVAL_KILL_AFTER_ROUNDS"  # test hook: SIGKILL before round N + 1 (0: before the first)
SLOW_ENV = "TRM_EVAL_SECONDS_PER_ROW"  # test hook: the evaluation's clock gains this much per row (RowClock)


def row_versions(split) -> np.ndarray:
    """int64 [N_examples]: each test-split row's version, its puzzle's index within its group."""
    gi = np.asarray(split.group_indices, dtype=np.int64)
    pi = np.asarray(split.puzzle_indices, dtype=np.int64)
    n_puzzles = int(pi.shape[0] - 1)
    group_of_puzzle = np.repeat(np.arange(len(gi) - 1), np.diff(gi))
    if group_of_puzzle.shape[0] != n_puzzles:
        raise ValueError(f"{split.path}: group_indices cover {group_of_puzzle.shape[0]} puzzles, "
                         f"puzzle_indices {n_puzzles}; rebuild the dataset")
    puzzle_version = np.arange(n_puzzles) - gi[group_of_puzzle]
    return np.repeat(puzzle_version, np.diff(pi))


def version_bounds(n_versions: int, kind: str) -> list[int]:
    """Round boundaries over versions: [0, 1, 2, 4, 8, 16, 32, 48, ..., n] ("anytime") or [0, n]."""
    if kind not in SCHEDULES:
        raise ValueError(f"rounds = {kind!r}: choose one of {', '.join(SCHEDULES)}")
    if kind == "one" or n_versions <= 1:
        return [0, max(n_versions, 1)]
    bounds, b = [0, 1], 1
    while b < n_versions:
        b = b * 2 if b < MAX_ROUND_VERSIONS else b + MAX_ROUND_VERSIONS
        bounds.append(min(b, n_versions))
    return bounds


def schedule(split, kind: str, batch: int = 1) -> list[np.ndarray]:
    """The rows of each round (int64, ascending): every row exactly once over the rounds.

    Rows are taken in (version, row) order and round r ends at the first multiple of `batch` (the
    evaluation's global batch) at or after the last row of versions < b_r+1, so no round but the last
    predicts a part-empty batch: a round covers versions [b_r, b_r+1) of every input, plus the first
    rows of the next versions that fill its last batch."""
    n = split.num_examples
    if kind == "one":
        return [np.arange(n, dtype=np.int64)]
    versions = row_versions(split)
    order = np.lexsort((np.arange(n), versions))  # by version, then by row
    bounds = version_bounds(int(versions.max()) + 1 if n else 1, kind)
    counts = np.searchsorted(versions[order], bounds[1:], side="left")  # rows below each bound
    ends, start = [], 0
    for c in counts:
        end = min(n, -(-int(c) // batch) * batch)
        if end > start:
            ends.append(end)
            start = end
    starts = [0, *ends[:-1]]
    return [np.sort(order[a:b]).astype(np.int64) for a, b in zip(starts, ends)]


class RoundStore:
    """<output-dir>/rounds/: each finished round's predictions and the state that lists them."""

    def __init__(self, out_dir: str | Path, fingerprint: dict):
        self.dir = Path(out_dir) / "rounds"
        self.fingerprint = fingerprint

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    def clear(self) -> None:
        """A fresh evaluation: no earlier round may be mistaken for this one's."""
        if self.dir.is_dir():
            for f in self.dir.iterdir():
                if f.name == STATE_FILE or f.name.startswith(("round_", ".round_", f".{STATE_FILE}")):
                    f.unlink()

    def load(self) -> list:
        """The finished rounds' Predictions, in round order ([] when none). A state made by another
        evaluation (another checkpoint, dataset, schedule or batch) is refused: its votes would mix."""
        from trm.errors import UserError
        from trm.evaluate import Predictions

        if not self.state_path.is_file():
            return []
        state = json.loads(self.state_path.read_text())
        if state.get("fingerprint") != self.fingerprint:
            diff = sorted(k for k in set(self.fingerprint) | set(state.get("fingerprint") or {})
                          if (state.get("fingerprint") or {}).get(k) != self.fingerprint.get(k))
            raise UserError(f"--resume: {self.state_path} was written by another evaluation (differs in "
                            f"{', '.join(diff)}); resume with the same options, or drop --resume")
        out = []
        for r in range(int(state["rounds_done"])):
            with np.load(self.dir / f"round_{r}.npz") as z:
                out.append(Predictions(**{f.name: z[f.name] for f in dataclasses.fields(Predictions)}))
        return out

    def save(self, r: int, preds, rounds_total: int, rows_total: int, seconds: float) -> None:
        """Round r's predictions, then the state naming it as finished (a kill between the two
        leaves the state at r - 1 rounds: the file is simply written again on resume)."""
        buf = io.BytesIO()
        np.savez(buf, **{f.name: getattr(preds, f.name) for f in dataclasses.fields(preds)})
        write_bytes_atomic(self.dir / f"round_{r}.npz", buf.getvalue(), "a round's predictions")
        old = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        write_json_atomic(self.state_path, {
            "fingerprint": self.fingerprint, "rounds_done": r + 1, "rounds_total": rounds_total,
            "rows_total": rows_total,
            "round_seconds": [*old.get("round_seconds", [])[:r], round(seconds, 2)]}, indent=1)


class Progress:
    """Progress lines at least every `every_s` seconds while predicting: round, rows done, rows/s
    and the time left to the deadline (the notebook's log shows that the evaluation is alive)."""

    def __init__(self, rows_total: int, rounds_total: int, deadline: float | None = None,
                 every_s: float = 60.0, clock=time.time, world_size: int = 1, enabled: bool = True):
        self.rows_total, self.rounds_total, self.deadline = rows_total, rounds_total, deadline
        self.every_s, self.clock, self.world, self.enabled = every_s, clock, world_size, enabled
        self.t0 = self.last = clock()
        self.rows_at_start: int | None = None  # rows already done (resumed) when this run started
        self.rows_before = 0  # rows of every finished round
        self.round = 0

    def round_started(self, r: int, rows_before: int) -> None:
        self.round, self.rows_before = r, rows_before
        if self.rows_at_start is None:
            self.rows_at_start = rows_before

    def __call__(self, local_rows_done: int, force: bool = False) -> None:
        """After each batch, with this rank's rows done in the current round (ranks run in step)."""
        now = self.clock()
        if not self.enabled or (now - self.last < self.every_s and not force):
            return
        self.last = now
        done = min(self.rows_before + local_rows_done * self.world, self.rows_total)
        rate = (done - (self.rows_at_start or 0)) / max(now - self.t0, 1e-9)
        left = f", {(self.deadline - now) / 60:.1f} min to the deadline" if self.deadline else ""
        print(f"evaluation: round {self.round + 1}/{self.rounds_total}, {done}/{self.rows_total} rows, "
              f"{rate:.1f} rows/s{left}", flush=True)


class RowClock:
    """The evaluation's clock when $TRM_EVAL_SECONDS_PER_ROW is set (tests): wall time plus that many
    seconds for every row predicted so far, as a GPU that slow would see it; no sleeping."""

    def __init__(self, s_per_row: float):
        self.s_per_row, self.rows = s_per_row, 0

    def __call__(self) -> float:
        return time.time() + self.s_per_row * self.rows


def evaluation_clock():
    raw = os.environ.get(SLOW_ENV)
    return RowClock(float(raw)) if raw else time.time


def predicted_round_s(rows: int, seconds_per_row: float | None) -> float:
    """A round's predicted seconds from the rows/s measured so far (0 before any round: try it)."""
    return 0.0 if seconds_per_row is None else rows * seconds_per_row


def kill_hook(rounds_done: int) -> None:
    """$TRM_EVAL_KILL_AFTER_ROUNDS = N: SIGKILL this process before round N + 1 starts (N rounds
    saved; 0: before any), as Kaggle's deadline or the OOM killer would (no cleanup, no exception)."""
    raw = os.environ.get(KILL_ENV)
    if raw and rounds_done >= int(raw):
        import signal

        print(f"injected kill after {rounds_done} evaluation round(s) ({KILL_ENV})", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def _merged(done: list):
    """The finished rounds as one Predictions in dataset row order (the order upstream votes in)."""
    from trm.evaluate import Predictions, _concat

    return _concat({f.name: [getattr(p, f.name) for p in done] for f in dataclasses.fields(Predictions)},
                   done[0].preds.shape[1])


def run_rounds(model, dataset_dir, output_dir, *, kind: str, fingerprint: dict, global_batch_size: int,
               device=None, rank: int = 0, world_size: int = 1, early_exit: bool = False, graph: bool = False,
               resume: bool = False, deadline: float | None = None, progress_every_s: float = 60.0,
               challenges=None, solutions=None, n_pictures: int = 6, checkpoint=None, step=None,
               agree=lambda flag: flag, clock=time.time) -> dict | None:
    """Predict round by round (module docstring); after each round save it and write submission.json,
    metrics.json and per_task.csv from every finished row. Stops before a round predicted to end after
    `deadline` (epoch seconds; the rate measured on this run's rounds), agreed by every rank through
    `agree(flag) -> bool`. Returns the last metrics (with "rounds"), or None when no round finished."""
    from trm.data import load_split
    from trm.evaluate import evaluate_predictions, predict

    is_main = rank == 0
    split = load_split(dataset_dir, "test")
    rounds = schedule(split, kind, global_batch_size)
    store = RoundStore(output_dir, fingerprint)
    done = store.load() if resume else []
    if not resume and is_main:
        store.clear()
    progress = Progress(split.num_examples, len(rounds), deadline, progress_every_s, clock, world_size,
                        enabled=is_main)
    rows_done = sum(len(p) for p in done)
    t_run, rows_run, stopped = clock(), 0, None
    info = {"schedule": kind, "total": len(rounds), "resumed": len(done)}

    def vote(final: bool) -> dict:
        info.update(done=len(done), complete=len(done) == len(rounds), stopped_by=stopped,
                    rows_voted=rows_done, rows_total=split.num_examples)
        return evaluate_predictions(_merged(done), dataset_dir, output_dir, challenges=challenges,
                                    solutions=solutions, n_pictures=n_pictures if final else 0,
                                    checkpoint=checkpoint, step=step, write=is_main,
                                    verbose=is_main and final, extra={"rounds": dict(info)})

    metrics = vote(final=True) if done and len(done) == len(rounds) else None
    for r in range(len(done), len(rounds)):
        kill_hook(r)
        s_per_row = (clock() - t_run) / rows_run if rows_run else None
        need = predicted_round_s(len(rounds[r]), s_per_row)
        if deadline is not None and agree(clock() + need > deadline):
            stopped = (f"deadline: round {r + 1} ({len(rounds[r])} rows, predicted {need:.0f} s) would end "
                       f"after it ({max(deadline - clock(), 0):.0f} s left)")
            break
        t = clock()
        progress.round_started(r, rows_done)
        preds = predict(model, dataset_dir, global_batch_size=global_batch_size, device=device, rank=rank,
                        world_size=world_size, early_exit=early_exit, graph=graph, rows=rounds[r],
                        on_batch=progress)
        if isinstance(clock, RowClock):
            clock.rows += len(preds)
        done.append(preds)
        rows_done, rows_run = rows_done + len(preds), rows_run + len(preds)
        if is_main:
            store.save(r, preds, len(rounds), split.num_examples, clock() - t)
        metrics = vote(final=r == len(rounds) - 1)
        if is_main:
            voted = metrics["n_tasks"] - len(metrics["tasks_without_votes"])
            print(f"evaluation round {r + 1}/{len(rounds)} done in {clock() - t:.1f} s: {rows_done}/"
                  f"{split.num_examples} rows voted, {voted}/{metrics['n_tasks']} tasks with votes on every "
                  f"input; {Path(output_dir) / 'submission.json'} written", flush=True)
    if stopped is not None:
        if is_main:
            print(f"evaluation stopped before the end: {stopped}; the submission holds the votes of "
                  f"{len(done)}/{len(rounds)} rounds", flush=True)
        if metrics is not None:  # no second vote at the deadline: the record says why it stopped
            metrics["rounds"]["stopped_by"] = stopped
            if is_main:
                write_json_atomic(Path(output_dir) / "metrics.json", metrics, indent=1)
    return metrics
