"""Evaluate a TRM checkpoint on a built dataset's test split: vote, pass@K, Kaggle score, submission.

    python -m trm.evaluate --checkpoint runs/x/checkpoints/step_N --data data/arc2concept-aug-1000 \
        --output-dir runs/x/eval [--batch-size 256] [--early-exit] [--ensemble CKPT ...] \
        [--challenges arc-agi_evaluation_challenges.json --solutions arc-agi_evaluation_solutions.json]
    torchrun --nproc-per-node 8 -m trm.evaluate ...      # each rank its slice of every chunk

A checkpoint (--checkpoint, --ensemble) is a kit checkpoint directory, an upstream step_N file with
all_config.yaml beside it, or hf://owner/repo/path[@revision] (trm.sources.resolve_checkpoint).

Pipeline (docs/fidelity.md#evaluator): every test-split row is one augmented version of one test
input. Its prediction (argmax tokens after the last ACT step) is cropped (trm.grids.crop)
and mapped back through the inverse augmentation of its puzzle name; the same is done to
its input, whose hash matches it to a test input of the raw task. Per test input the
candidates are ranked by (vote count, then mean sigmoid(q_halt)), descending, exactly as
upstream. pass@K is upstream's per-task macro average; the Kaggle score is the official
micro average over test outputs of the written submission.json (trm.submission).

Labels: from --solutions, else from test_puzzles.json unless every output there is the
builder's [[0]] dummy (an unlabelled Kaggle test set); without labels pass@K and the
score are null. Tasks: every task of --challenges (those without votes get fallback
attempts and count 0), else the tasks of test_puzzles.json.

Outputs (rank 0, each written to a temp file then renamed): submission.json; metrics.json
(pass@1..pass@1000, kaggle_score, n_tasks, n_test_outputs, n_rows, token_accuracy,
exact_row_accuracy, mean_steps, checkpoint, step, ...); per_task.csv (one line per test
input: solved, correct_rank, n_votes, n_candidates, where each attempt came from, then
rank{k}_votes / _mean_q / _hash / _shape for the top 3); pictures/*.png (trm.plots).

Deliberate differences from upstream's `evaluators/arc.py`:
- Votes belong to ONE evaluation (one checkpoint). Upstream's default aggregated_voting
  never clears its vote store, so the pass@K it logs during training silently ensembles
  every checkpoint evaluated so far (upstream issue #35). Here several checkpoints are
  combined only when asked (`--ensemble`, or `vote([preds_a, preds_b])`).
- The submission is always valid (see trm.submission): every task of the challenges file,
  one entry per test input, two distinct non-empty attempts; fallbacks fill the gaps.
- No process group is needed for one process; under torchrun the predictions are
  all-gathered and put back in dataset row order, so N processes vote exactly like 1
  (upstream orders equal-(count, q) ties by rank, then row).
- Optional early exit (`--early-exit`, off by default because it changes the results):
  a row stops at the first step with q_halt > 0 and its batch slot takes the next row.
Token accuracy is reported per cell (micro), labelled as NOT a solve rate.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from trm.anytime import SCHEDULES, evaluation_clock, run_rounds
from trm.atomic import write_bytes_atomic, write_json_atomic
from trm.checkpoint import PuzzleTableMismatch, load_checkpoint
from trm.data import (
    IGNORE_LABEL_ID,
    iter_test_batches,
    load_identifiers,
    load_split,
    load_test_puzzles,
    rank_slice,
)
from trm.distributed import all_reduce_sum, setup, teardown
from trm.errors import UserError, cli_main
from trm.grids import crop, grid_hash, inverse_augment, parse_aug_name
from trm.model import CompiledStep, TRMWithLoss, compile_enabled, compile_net, pick_dtype
from trm.sources import resolve_checkpoint
from trm.submission import pick_attempts, score_submission

PASS_KS = (1, 2, 5, 10, 100, 1000)
CSV_TOP = 3  # candidates per test input listed in per_task.csv


# --------------------------------------------------------------------------- predictions

@dataclass
class Predictions:
    """Model outputs per test-split row, in dataset row order."""

    rows: np.ndarray  # int64 [N] row index in the test split
    puzzle_ids: np.ndarray  # int32 [N]
    preds: np.ndarray  # uint8 [N, 900] argmax tokens at the row's final ACT step
    q_halt: np.ndarray  # float32 [N] q_halt logit at that step (sigmoid taken when voting)
    n_correct: np.ndarray  # int32 [N] labelled cells predicted right
    n_label: np.ndarray  # int32 [N] labelled (non-PAD) cells
    steps: np.ndarray  # int32 [N] ACT steps the row ran

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @classmethod
    def from_arrays(cls, dataset_dir, preds, q_halt, rows=None, steps=None) -> Predictions:
        """Wrap externally produced preds (e.g. upstream's); ids and label counts come from the split."""
        split = load_split(dataset_dir, "test")
        preds = np.asarray(preds).astype(np.uint8)
        rows = np.arange(len(preds), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        labels = np.asarray(split.labels[rows], dtype=np.int32)
        ignore = split.meta.get("ignore_label_id", 0)
        mask = labels != ignore
        return cls(
            rows=rows,
            puzzle_ids=split.example_puzzle_ids()[rows],
            preds=preds,
            q_halt=np.asarray(q_halt, dtype=np.float32),
            n_correct=((preds == labels) & mask).sum(1).astype(np.int32),
            n_label=mask.sum(1).astype(np.int32),
            steps=np.zeros(len(rows), np.int32) if steps is None else np.asarray(steps, np.int32),
        )


def _rank_rows(n_examples: int, global_batch_size: int, rank: int, world_size: int) -> list[np.ndarray]:
    """Row indices this rank gets from each chunk, as trm.data.iter_test_batches slices them."""
    local = rank_slice(global_batch_size, rank, world_size)
    out = []
    for start in range(0, n_examples, global_batch_size):
        end = min(start + global_batch_size, n_examples)
        out.append(np.arange(min(start + local.start, end), min(start + local.stop, end), dtype=np.int64))
    return out


def _to_torch(batch: dict[str, np.ndarray], device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in batch.items()}


def _row_stats(preds: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = labels != IGNORE_LABEL_ID
    return ((preds == labels) & mask).sum(1).astype(np.int32), mask.sum(1).astype(np.int32)


@torch.inference_mode()
def _predict_full(model, step, split, global_batch_size, device, rank, world_size,
                  on_batch=None) -> dict[str, list]:
    """Upstream: a fresh carry per batch, run until every row halted (halt_max_steps calls in eval).
    step(carry, batch): the model's ACT step (the model itself, or a CompiledStep of it).
    on_batch(rows done by this rank): called after every batch (progress lines)."""
    acc: dict[str, list] = {f.name: [] for f in fields(Predictions)}
    chunks = _rank_rows(split.num_examples, global_batch_size, rank, world_size)
    max_steps = model.config.halt_max_steps
    for rows, (batch, n_valid) in zip(chunks, iter_test_batches(split, global_batch_size, rank, world_size)):
        assert n_valid == len(rows)
        tb = _to_torch(batch, device)
        carry = model.initial_carry(tb)
        for _ in range(max_steps):
            carry, out = step(carry, tb)
            if bool(carry.halted.all()):
                break
        preds = out["logits"].argmax(-1).to(torch.uint8).cpu().numpy()[:n_valid]
        n_correct, n_label = _row_stats(preds, batch["labels"][:n_valid])
        acc["rows"].append(rows)
        acc["puzzle_ids"].append(batch["puzzle_identifiers"][:n_valid])
        acc["preds"].append(preds)
        acc["q_halt"].append(out["q_halt_logits"].float().cpu().numpy()[:n_valid])
        acc["n_correct"].append(n_correct)
        acc["n_label"].append(n_label)
        acc["steps"].append(carry.steps.cpu().numpy().astype(np.int32)[:n_valid])
        if on_batch is not None:
            on_batch(sum(len(r) for r in acc["rows"]))
    return acc


@torch.inference_mode()
def _predict_early_exit(model, step, split, global_batch_size, device, rank, world_size,
                        on_batch=None) -> dict[str, list]:
    """Rows leave at the first step with q_halt > 0 (or at halt_max_steps); free slots refill.

    The model loads a new row into every slot whose carry.halted is True, so after each call
    we set halted = (q_halt > 0) | (steps >= max) for busy slots and True for idle ones.
    """
    acc: dict[str, list] = {f.name: [] for f in fields(Predictions)}
    queue = deque(int(r) for rows in _rank_rows(split.num_examples, global_batch_size, rank, world_size)
                  for r in rows)
    size = rank_slice(global_batch_size, rank, world_size)
    size = size.stop - size.start
    ids = split.example_puzzle_ids()
    ignore = split.meta.get("ignore_label_id", 0)
    max_steps = model.config.halt_max_steps
    slot_row = np.full(size, -1, dtype=np.int64)  # row in each slot, -1 idle
    batch = {"inputs": np.zeros((size, split.inputs.shape[1]), np.int32),
             "labels": np.full((size, split.inputs.shape[1]), IGNORE_LABEL_ID, np.int32),
             "puzzle_identifiers": np.zeros(size, np.int32)}
    carry = model.initial_carry(_to_torch(batch, device))
    halted = np.ones(size, dtype=bool)
    while queue or (slot_row >= 0).any():
        for s in np.flatnonzero(halted):  # load the next rows into the free slots
            r = queue.popleft() if queue else -1
            slot_row[s] = r
            batch["inputs"][s] = split.inputs[r] if r >= 0 else 0
            lab = (np.asarray(split.labels[r], np.int32) if r >= 0
                   else np.full(batch["labels"].shape[1], ignore))
            batch["labels"][s] = np.where(lab == ignore, IGNORE_LABEL_ID, lab)
            batch["puzzle_identifiers"][s] = ids[r] if r >= 0 else 0
        carry, out = step(carry, _to_torch(batch, device))
        q = out["q_halt_logits"].float().cpu().numpy()
        steps = carry.steps.cpu().numpy().astype(np.int32)
        busy = slot_row >= 0
        done = busy & ((q > 0) | (steps >= max_steps))
        if done.any():
            preds = out["logits"][torch.from_numpy(done).to(device)].argmax(-1).to(torch.uint8).cpu().numpy()
            n_correct, n_label = _row_stats(preds, batch["labels"][done])
            acc["rows"].append(slot_row[done].copy())
            acc["puzzle_ids"].append(batch["puzzle_identifiers"][done].copy())
            acc["preds"].append(preds)
            acc["q_halt"].append(q[done])
            acc["n_correct"].append(n_correct)
            acc["n_label"].append(n_label)
            acc["steps"].append(steps[done])
            slot_row[done] = -1
            if on_batch is not None:
                on_batch(sum(len(r) for r in acc["rows"]))
        halted = done | ~busy
        carry.halted = torch.from_numpy(halted).to(carry.halted.device)
    return acc


def _concat(acc: dict[str, list], seq_len: int) -> Predictions:
    empty = {"rows": np.int64, "puzzle_ids": np.int32, "q_halt": np.float32, "n_correct": np.int32,
             "n_label": np.int32, "steps": np.int32}
    cols = {}
    for name, parts in acc.items():
        if parts:
            cols[name] = np.concatenate(parts)
        elif name == "preds":
            cols[name] = np.zeros((0, seq_len), np.uint8)
        else:
            cols[name] = np.zeros(0, empty[name])
    order = np.argsort(cols["rows"], kind="stable")
    return Predictions(**{k: v[order] for k, v in cols.items()})


def _all_gather(local: Predictions, world_size: int) -> Predictions:
    """Every rank gets every rank's rows (padded tensor all_gather: works on gloo and nccl)."""
    import torch.distributed as dist

    dev = (torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl"
           else torch.device("cpu"))
    n = torch.tensor([len(local)], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    acc = {}
    for f in fields(Predictions):
        a = getattr(local, f.name)
        t = torch.zeros((max(sizes), *a.shape[1:]), dtype=torch.from_numpy(a[:0]).dtype, device=dev)
        t[: len(a)] = torch.from_numpy(a).to(dev)
        bufs = [torch.empty_like(t) for _ in range(world_size)]
        dist.all_gather(bufs, t)
        acc[f.name] = [b[:s].cpu().numpy() for b, s in zip(bufs, sizes)]
    return _concat(acc, local.preds.shape[1])


def _compiled_step(model) -> CompiledStep:
    """The model's evaluation CompiledStep, made once: later predict calls reuse its graphs and buffers."""
    if "_compiled_step" not in model.__dict__:
        model._compiled_step = CompiledStep(model)
    return model._compiled_step


def predict(model, dataset_dir, *, global_batch_size: int, device=None, rank: int = 0, world_size: int = 1,
            early_exit: bool = False, limit_rows: int | None = None, graph: bool = False,
            rows: np.ndarray | None = None, on_batch=None) -> Predictions:
    """Run the model (a TRM, or a TRMWithLoss wrapping one) over the test split.

    With world_size > 1 (process group initialised) each rank runs its slice of every chunk
    and every rank returns all rows, in row order. limit_rows: only the first N rows (smoke
    runs and benchmarks; tasks whose rows are cut get fewer votes or none). graph: every ACT step
    compiled whole and CUDA-graphed on CUDA (trm.model.CompiledStep; same predictions); should it
    fail, the evaluation runs again without it (a warning says so) rather than not at all.
    rows: only these test-split rows (ascending; a round of trm.anytime), returned under their own
    row indices. on_batch(rows done by this rank): called after every batch.
    """
    split = load_split(dataset_dir, "test")
    if limit_rows is not None:
        split = dataclasses.replace(split, inputs=split.inputs[:limit_rows], labels=split.labels[:limit_rows])
    if rows is not None:  # a split of just these rows, one single-row puzzle each (ids kept)
        rows = np.asarray(rows, dtype=np.int64)
        split = dataclasses.replace(split, inputs=split.inputs[rows], labels=split.labels[rows],
                                    puzzle_identifiers=split.example_puzzle_ids()[rows],
                                    puzzle_indices=np.arange(len(rows) + 1, dtype=np.int32))
    if isinstance(getattr(model, "_orig_mod", model), TRMWithLoss):
        model = model.model
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    run = _predict_early_exit if early_exit else _predict_full
    try:
        try:
            step = _compiled_step(model) if graph else model
            acc = run(model, step, split, global_batch_size, device, rank, world_size, on_batch)
        except Exception as e:  # a compiler or CUDA-graph failure must not cost the evaluation
            if not graph:
                raise
            print(f"WARNING: the compiled, CUDA-graphed evaluation failed ({type(e).__name__}: {e}); "
                  "evaluating without it", flush=True)
            acc = run(model, model, split, global_batch_size, device, rank, world_size, on_batch)
        local = _concat(acc, split.inputs.shape[1])
    finally:
        model.train(was_training)
    out = _all_gather(local, world_size) if world_size > 1 else local
    if rows is not None:  # back to the test split's row indices (monotonic: the order holds)
        out.rows = rows[out.rows]
    return out


# --------------------------------------------------------------------------- voting

@dataclass
class Candidate:
    hash: str
    grid: np.ndarray  # uint8 [h, w] in the original frame (may be 0x0 for an empty crop)
    count: int
    mean_q: float  # mean sigmoid(q_halt) of its votes


@dataclass
class Votes:
    """task -> input hash -> pred hash -> [count, sum of sigmoid(q)], insertion-ordered."""

    table: dict[str, dict[str, dict[str, list]]]
    grids: dict[str, np.ndarray]
    n_rows: int

    def ranked(self, task_id: str, test_input) -> list[Candidate]:
        """Candidates for one test input, best first: (count, mean q) descending, stable as upstream."""
        h = grid_hash(np.asarray(test_input, dtype=np.uint8))
        stats = self.table.get(task_id, {}).get(h, {})
        cands = [Candidate(p, self.grids[p], int(c), s / c) for p, (c, s) in stats.items()]
        return sorted(cands, key=lambda x: (x.count, x.mean_q), reverse=True)


def vote(predictions: Predictions | Sequence[Predictions], dataset_dir) -> Votes:
    """Votes of one Predictions, or of several (an explicit checkpoint ensemble), in that order."""
    runs = [predictions] if isinstance(predictions, Predictions) else list(predictions)
    split = load_split(dataset_dir, "test")
    names = load_identifiers(dataset_dir)
    table: dict[str, dict[str, dict[str, list]]] = {}
    grids: dict[str, np.ndarray] = {}
    inverse_cache: dict[int, tuple] = {}
    n = 0
    for p in runs:
        for row, pid, pred, q in zip(p.rows, p.puzzle_ids, p.preds, p.q_halt):
            if pid == 0:  # blank padding row
                continue
            if pid not in inverse_cache:
                inverse_cache[pid] = parse_aug_name(names[pid])
            task, tid, cmap = inverse_cache[pid]
            in_hash = grid_hash(inverse_augment(crop(split.inputs[row]), tid, cmap))
            grid = inverse_augment(crop(pred), tid, cmap)
            p_hash = grid_hash(grid)
            grids.setdefault(p_hash, grid)
            stat = table.setdefault(task, {}).setdefault(in_hash, {}).setdefault(p_hash, [0, 0.0])
            stat[0] += 1
            stat[1] += 1.0 / (1.0 + math.exp(-float(q)))  # sigmoid in fp64, as upstream
            n += 1
    return Votes(table, grids, n)


# --------------------------------------------------------------------------- scoring and outputs

def _json_or_path(x) -> dict | None:
    if x is None or isinstance(x, dict):
        return x
    return json.loads(Path(x).read_text())


def _known_labels(test_puzzles: dict) -> dict | None:
    """Test outputs from test_puzzles.json, or None when the builder wrote its [[0]] dummies."""
    outs = {t: [pair.get("output") for pair in task["test"]] for t, task in test_puzzles.items()}
    flat = [o for v in outs.values() for o in v]
    if not flat or all(o is None or o == [[0]] for o in flat):
        return None
    return outs


def evaluate_predictions(predictions: Predictions | Sequence[Predictions], dataset_dir, output_dir=None, *,
                         challenges=None, solutions=None, n_pictures: int = 6, checkpoint=None, step=None,
                         write: bool = True, verbose: bool = True, extra: dict | None = None) -> dict:
    """Vote, score and (when output_dir and write) write submission.json, metrics.json,
    per_task.csv and pictures. challenges/solutions: dicts or JSON paths; without them the
    tasks and labels come from test_puzzles.json (labels only if not the builder's dummies).
    extra: more entries for metrics.json (trm.anytime's rounds)."""
    test_puzzles = load_test_puzzles(dataset_dir)
    challenges = _json_or_path(challenges)
    if challenges is None:
        challenges = {t: {"train": task.get("train", []),
                          "test": [{"input": p["input"]} for p in task["test"]]}
                      for t, task in test_puzzles.items()}
    labels = _json_or_path(solutions) or _known_labels(test_puzzles)
    runs = [predictions] if isinstance(predictions, Predictions) else list(predictions)
    votes = vote(runs, dataset_dir)

    submission, records, pass_hits = {}, [], {}
    for task_id, task in challenges.items():
        submission[task_id] = []
        truths = labels.get(task_id) if labels else None
        for i, pair in enumerate(task["test"]):
            ranked = votes.ranked(task_id, pair["input"])
            (a1, a2), sources = pick_attempts([c.grid for c in ranked], pair["input"])
            submission[task_id].append({"attempt_1": a1, "attempt_2": a2})
            rec = {"task": task_id, "test_index": i, "ranked": ranked, "sources": sources,
                   "attempts": (a1, a2), "input": pair["input"], "truth": None, "solved": None,
                   "correct_rank": None}
            if truths is not None and i < len(truths):
                truth = truths[i]
                label_hash = grid_hash(np.asarray(truth, dtype=np.uint8))
                hits = [c.hash == label_hash for c in ranked]
                rec.update(truth=truth, solved=int(truth in (a1, a2)),
                           correct_rank=hits.index(True) + 1 if any(hits) else None)
                pass_hits.setdefault(task_id, []).append(rec["correct_rank"])
            records.append(rec)

    metrics: dict = {}
    for k in PASS_KS:  # upstream: per task, solved pairs / pairs; mean over tasks (none -> 0)
        per_task = [sum(r is not None and r <= k for r in ranks) / len(ranks) for ranks in pass_hits.values()]
        metrics[f"pass@{k}"] = float(sum(per_task) / len(per_task)) if per_task else None
    labelled = {t: v for t, v in (labels or {}).items() if t in challenges}
    scored = score_submission(submission, labelled) if labelled else None
    n_label = int(sum(int(p.n_label.sum()) for p in runs))
    n_labelled_rows = sum(int((p.n_label > 0).sum()) for p in runs)
    metrics.update(
        kaggle_score=scored["score"] if scored else None,
        kaggle_correct=scored["n_correct"] if scored else None,
        kaggle_scored_outputs=scored["n_test_outputs"] if scored else None,
        n_tasks=len(challenges),
        n_test_outputs=sum(len(t["test"]) for t in challenges.values()),
        n_rows=sum(len(p) for p in runs),
        n_votes=votes.n_rows,
        n_fallback_attempts=sum(s == "fallback" for r in records for s in r["sources"]),
        token_accuracy=sum(int(p.n_correct.sum()) for p in runs) / n_label if n_label else None,
        exact_row_accuracy=(sum(int(((p.n_correct == p.n_label) & (p.n_label > 0)).sum()) for p in runs)
                            / n_labelled_rows if n_labelled_rows else None),
        mean_steps=_mean_steps(runs),
        n_checkpoints=len(runs),
        checkpoint=None if checkpoint is None else str(checkpoint),
        step=step,
        # rows voted per test input, and the tasks with an input no row voted for (its attempts
        # are fallbacks): what a cut-short evaluation did and did not cover
        votes_per_input=_spread([sum(c.count for c in r["ranked"]) for r in records]),
        tasks_without_votes=sorted({r["task"] for r in records if not r["ranked"]}),
        **(extra or {}),
    )
    if verbose:
        print(format_metrics(metrics))
    if output_dir is not None and write:
        out = Path(output_dir)
        write_json_atomic(out / "submission.json", submission)
        write_json_atomic(out / "metrics.json", metrics, indent=1)
        _write_csv_atomic(out / "per_task.csv", records)
        _pictures(out, records, n_pictures, verbose)
    return metrics


def _spread(values: list[int]) -> dict | None:
    return {"min": min(values), "median": float(np.median(values)), "max": max(values)} if values else None


def _mean_steps(runs: list[Predictions]) -> float | None:
    steps = np.concatenate([p.steps for p in runs])
    return float(steps.mean()) if steps.size and steps.min() > 0 else None  # 0 = not recorded


def format_metrics(m: dict) -> str:
    def f(x):
        return "n/a (no labels)" if x is None else f"{x:.4f}"

    lines = [f"== {m['n_tasks']} tasks, {m['n_test_outputs']} test outputs, {m['n_rows']} rows"
             + (f", {m['n_checkpoints']} checkpoints (ensemble)" if m["n_checkpoints"] > 1 else "")
             + (f"; checkpoint {m['checkpoint']}" if m["checkpoint"] else "")
             + (f" step {m['step']}" if m["step"] is not None else "") + " =="]
    for k in PASS_KS:
        note = "  <- upstream headline (per-task macro)" if k == 2 else ""
        lines.append(f"pass@{k:<5} {f(m[f'pass@{k}'])}{note}")
    ks = m["kaggle_score"]
    lines.append("kaggle score (official: either attempt exact, micro over test outputs): "
                 + (f"{ks:.4f} = {m['kaggle_correct']}/{m['kaggle_scored_outputs']}"
                    if ks is not None else f(ks)))
    lines.append(f"fallback attempts in submission: {m['n_fallback_attempts']} of {2 * m['n_test_outputs']}")
    lines.append(f"token accuracy (per-cell, NOT a solve rate): {f(m['token_accuracy'])}")
    lines.append(f"exact row accuracy (per augmented row, NOT a solve rate): {f(m['exact_row_accuracy'])}")
    if m["mean_steps"] is not None:
        lines.append(f"mean ACT steps per row: {m['mean_steps']:.2f}")
    return "\n".join(lines)


def _write_csv_atomic(path: Path, records: list[dict]) -> None:
    head = ["task", "test_index", "solved", "correct_rank", "n_votes", "n_candidates",
            "attempt_1_source", "attempt_2_source"]
    for k in range(1, CSV_TOP + 1):
        head += [f"rank{k}_votes", f"rank{k}_mean_q", f"rank{k}_hash", f"rank{k}_shape"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for r in records:
        ranked = r["ranked"]
        row = [r["task"], r["test_index"], "" if r["solved"] is None else r["solved"],
               r["correct_rank"] or "", sum(c.count for c in ranked), len(ranked), *r["sources"]]
        for c in ranked[:CSV_TOP]:
            row += [c.count, f"{c.mean_q:.6f}", c.hash[:16], "x".join(map(str, c.grid.shape))]
        row += [""] * (len(head) - len(row))
        w.writerow(row)
    write_bytes_atomic(path, buf.getvalue().encode(), "the per-task table")


def _pictures(out: Path, records: list[dict], n: int, verbose: bool) -> None:
    """n task pictures: unsolved and solved alternately when labels are known, else the first n."""
    if n <= 0 or not records:
        return
    try:
        from trm.plots import plot_test_input
    except ImportError as e:  # matplotlib is a tooling extra, not a runtime dependency
        if verbose:
            print(f"pictures skipped ({e})")
        return
    unsolved = [r for r in records if r["solved"] == 0]
    solved = [r for r in records if r["solved"] == 1]
    rest = [r for r in records if r["solved"] is None]
    pick = []
    for i in range(n):
        pick += [lst[i] for lst in (unsolved, solved) if i < len(lst)]
    pick = (pick + rest)[:n]
    pic_dir = out / "pictures"
    pic_dir.mkdir(parents=True, exist_ok=True)
    for r in pick:
        status = {None: "unknown", 0: "unsolved", 1: "solved"}[r["solved"]]
        path = pic_dir / f"{r['task']}_{r['test_index']}_{status}.png"
        plot_test_input(path, r["input"], r["attempts"], r["truth"],
                        title=f"{r['task']} test {r['test_index']} ({status})",
                        captions=[_caption(r, j) for j in range(2)])


def _caption(r: dict, j: int) -> str:
    if r["sources"][j] == "fallback":
        return f"attempt {j + 1} (fallback)"
    c = [c for c in r["ranked"] if c.grid.tolist() == r["attempts"][j]][0]
    return f"attempt {j + 1}: {c.count} votes, q {c.mean_q:.2f}"


def evaluate_model(model, dataset_dir, output_dir=None, *, global_batch_size: int = 256, device=None,
                   rank: int = 0,
                   world_size: int = 1, early_exit: bool = False, challenges=None, solutions=None,
                   n_pictures: int = 6, checkpoint=None, step=None) -> dict:
    """predict + evaluate_predictions; every rank gets the metrics, only rank 0 prints and writes."""
    preds = predict(model, dataset_dir, global_batch_size=global_batch_size, device=device, rank=rank,
                    world_size=world_size, early_exit=early_exit)
    return evaluate_predictions(preds, dataset_dir, output_dir, challenges=challenges, solutions=solutions,
                                n_pictures=n_pictures, checkpoint=checkpoint, step=step,
                                write=rank == 0, verbose=rank == 0)


# --------------------------------------------------------------------------- CLI

def compile_scope(setting: str, device) -> str:
    """--compile as "step" | "net" | "off". auto: "step" on CUDA -- the evaluation is 16 ACT steps of
    fixed shapes per batch, the case CUDA graphs are for (docs/performance.md) -- "off" elsewhere
    (compiling on CPU costs minutes); "on" is "net"."""
    if setting == "auto":
        return "step" if compile_enabled(None, device) else "off"
    return {"on": "net"}.get(setting, setting)


def parser() -> argparse.ArgumentParser:
    """The evaluation options: the one list (the 03 notebook and `trmkit.notebooks evaluate` are
    checked against it in tests/test_one_source.py)."""
    ap = argparse.ArgumentParser(prog="python -m trm.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="kit checkpoint dir, upstream step_N (all_config.yaml beside it), "
                                         "or hf://owner/repo/path[@revision]")
    ap.add_argument("--ensemble", nargs="+", default=[], metavar="CKPT",
                    help="more checkpoints whose votes are pooled with --checkpoint's (explicit ensemble)")
    ap.add_argument("--data", required=True, help="built dataset dir (python -m dataset_builder)")
    ap.add_argument("--output-dir", help="where submission.json, metrics.json, per_task.csv, pictures go")
    ap.add_argument("--batch-size", type=int, default=256, help="global batch size (split across ranks)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ... (auto: cuda if available)")
    ap.add_argument("--dtype",
                    help="forward dtype: bfloat16, float16, float32 (default: trm.model.pick_dtype)")
    ap.add_argument("--early-exit", action="store_true", help="stop rows at q_halt > 0 (changes results)")
    ap.add_argument("--compile", choices=["auto", "step", "net", "on", "off"], default="auto",
                    help="step: every ACT step compiled whole and CUDA-graphed; net (or on): the recurrent "
                         "net only; auto: step on CUDA, off elsewhere (compile_scope)")
    ap.add_argument("--challenges", help="challenges JSON: the submission covers all its task ids")
    ap.add_argument("--solutions", help="solutions JSON: labels for pass@K and the Kaggle score")
    ap.add_argument("--pictures", type=int, default=6, help="number of task pictures (needs matplotlib)")
    ap.add_argument("--rounds", choices=list(SCHEDULES), default="one",
                    help="anytime: in rounds over the augmented versions (1, 1, 2, 4, 8, 16, then 16 each), "
                         "each finished round saved under OUTPUT_DIR/rounds/ and the submission written from "
                         "every finished row; one: a single pass (trm.anytime)")
    ap.add_argument("--resume", action="store_true",
                    help="with --rounds anytime: continue from the rounds saved in OUTPUT_DIR/rounds/")
    ap.add_argument("--deadline", type=float, metavar="EPOCH_S",
                    help="with --rounds anytime: start no round predicted to end after this (Unix seconds)")
    ap.add_argument("--progress-seconds", type=float, default=60.0,
                    help="with --rounds anytime: a progress line at least this often")
    ap.add_argument("--load-puzzle-emb", "--load_puzzle_emb", choices=["keep", "mean"], default="keep",
                    help="mean: every puzzle starts from the checkpoint's mean embedding (a dataset whose "
                         "identifiers.json differs from the training one, e.g. new tasks)")
    return ap


def main(argv: list[str] | None = None) -> dict:
    ap = parser()
    args = ap.parse_args(argv)
    ckpts = ([args.checkpoint] if args.checkpoint else []) + list(args.ensemble)
    if not ckpts:
        ap.error("give --checkpoint (and/or --ensemble CKPT ...)")
    anytime = args.rounds == "anytime"
    if (args.resume or args.deadline is not None) and not anytime:
        ap.error("--resume and --deadline go with --rounds anytime")
    if anytime and (len(ckpts) > 1 or not args.output_dir):
        ap.error("--rounds anytime takes one --checkpoint (no --ensemble) and an --output-dir")
    # user errors before any work, as one line each (trm.errors): the dataset, then each checkpoint
    if not (Path(args.data) / "identifiers.json").is_file():
        raise UserError(f"--data {args.data}: not a built dataset (no identifiers.json); "
                        "build one with python -m dataset_builder")
    for path in ckpts:
        if not str(path).startswith("hf://") and not Path(path).exists():
            raise UserError(f"checkpoint {path} not found: pass a checkpoint dir "
                            "(runs/<run>/checkpoints/step_N), "
                            "an upstream step_N file or hf://owner/repo/path[@revision]")

    ctx = setup(args.device)  # joins torchrun's process group when WORLD_SIZE/RANK are set
    dtype = str(pick_dtype(ctx.device, args.dtype)).removeprefix("torch.")
    runs, step = [], None
    for path in ckpts:
        t0 = time.time()
        try:
            model, meta = load_checkpoint(resolve_checkpoint(path), map_location=ctx.device,
                                          dataset_dir=args.data,
                                          overrides={"forward_dtype": dtype},
                                          reset_puzzle_emb="mean" if args.load_puzzle_emb == "mean" else None)
        except PuzzleTableMismatch as e:  # only this one has the option as its fix
            raise UserError(f"{e} On the command line: --load-puzzle-emb mean.") from None
        scope = compile_scope(args.compile, ctx.device)
        compile_net(model, scope == "net", ctx.device)
        if anytime:
            metrics = _anytime(args, model, meta, ctx, scope == "step")
            teardown(ctx)
            return metrics
        runs.append(predict(model, args.data, global_batch_size=args.batch_size, device=ctx.device,
                            rank=ctx.rank, world_size=ctx.world_size, early_exit=args.early_exit,
                            graph=scope == "step"))
        step = meta.get("step") if len(ckpts) == 1 else None
        if ctx.is_main:
            print(f"predicted {len(runs[-1])} rows with {path} ({dtype}, {ctx.world_size} process(es), "
                  f"compile {scope}) in {time.time() - t0:.1f} s")
        del model
    metrics = evaluate_predictions(runs if len(runs) > 1 else runs[0], args.data, args.output_dir,
                                   challenges=args.challenges, solutions=args.solutions,
                                   n_pictures=args.pictures, checkpoint=",".join(map(str, ckpts)),
                                   step=step, write=ctx.is_main, verbose=ctx.is_main)
    if ctx.is_main and args.output_dir:
        print(f"wrote {args.output_dir}/submission.json, metrics.json, per_task.csv")
    teardown(ctx)
    return metrics


def _anytime(args, model, meta: dict, ctx, graph: bool) -> dict | None:
    """--rounds anytime: trm.anytime.run_rounds with this evaluation's fingerprint (what a resumed
    state must match) and a deadline every rank agrees on."""
    data = load_split(args.data, "test")
    fingerprint = {"checkpoint": str(args.checkpoint), "step": meta.get("step"),
                   "data": str(Path(args.data).resolve()), "rows": data.num_examples, "schedule": args.rounds,
                   "batch_size": args.batch_size, "early_exit": args.early_exit}

    def agree(flag: bool) -> bool:  # any rank past the line stops every rank (clocks may straddle it)
        if not ctx.distributed:
            return flag
        return bool(all_reduce_sum(torch.tensor([float(flag)], device=ctx.device), ctx).item() > 0)

    return run_rounds(model, args.data, args.output_dir, kind=args.rounds, fingerprint=fingerprint,
                      global_batch_size=args.batch_size, device=ctx.device, rank=ctx.rank,
                      world_size=ctx.world_size, early_exit=args.early_exit, graph=graph, resume=args.resume,
                      deadline=args.deadline, progress_every_s=args.progress_seconds,
                      challenges=args.challenges, solutions=args.solutions, n_pictures=args.pictures,
                      checkpoint=args.checkpoint, step=meta.get("step"), agree=agree,
                      clock=evaluation_clock())


if __name__ == "__main__":
    sys.exit(cli_main(main))
