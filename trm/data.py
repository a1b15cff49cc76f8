"""Reading a built TRM dataset, and the batches upstream's loader makes from it.

A dataset directory (written by `python -m dataset_builder`) holds `train/` and `test/`
splits of memory-mapped arrays (docs/fidelity.md#files):

    all__inputs.npy, all__labels.npy   uint8 [N_examples, 900]
    all__puzzle_identifiers.npy        int32 [N_puzzles]
    all__puzzle_indices.npy            int32 [N_puzzles + 1]  offsets into the examples
    all__group_indices.npy             int32 [N_groups + 1]   offsets into the puzzles
    dataset.json                       metadata (seq_len, vocab_size, num_puzzle_identifiers, ...)

plus `identifiers.json` (id -> puzzle name) and `test_puzzles.json` beside them.

Batches are dicts of int32 numpy arrays: `inputs` [B, 900], `labels` [B, 900] with
PAD labels mapped to IGNORE_LABEL_ID (-100), `puzzle_identifiers` [B]; short batches
are padded with blank rows (input 0, label -100, id 0) as upstream's collate does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trm.grids import IGNORE_LABEL_ID

BLANK_ID = 0
SET_NAME = "all"  # upstream's single set name inside a split


@dataclass
class Split:
    """One memory-mapped split of a built dataset."""

    path: Path
    meta: dict
    inputs: np.ndarray  # uint8 [N_examples, seq_len]
    labels: np.ndarray  # uint8 [N_examples, seq_len]
    puzzle_identifiers: np.ndarray  # int32 [N_puzzles]
    puzzle_indices: np.ndarray  # int32 [N_puzzles + 1]
    group_indices: np.ndarray  # int32 [N_groups + 1]

    @property
    def num_examples(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_groups(self) -> int:
        return int(self.group_indices.shape[0] - 1)

    def example_puzzle_ids(self) -> np.ndarray:
        """int32 [N_examples]: the puzzle identifier of every example row."""
        counts = np.diff(self.puzzle_indices)
        return np.repeat(self.puzzle_identifiers, counts).astype(np.int32)


def load_split(dataset_dir: str | Path, split: str) -> Split:
    """Open `dataset_dir/split` with memory-mapped example arrays.

    Raises FileNotFoundError with a message naming the missing file and how to build it.
    """
    path = Path(dataset_dir) / split
    meta_path = path / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{meta_path}: not found; is {dataset_dir} a dataset built with `python -m dataset_builder`?"
        )
    meta = json.loads(meta_path.read_text())
    sets = meta.get("sets", [SET_NAME])
    if sets != [SET_NAME]:
        raise ValueError(f"{meta_path}: expected sets ['all'], got {sets}")

    def arr(name: str, mmap: bool) -> np.ndarray:
        f = path / f"{SET_NAME}__{name}.npy"
        if not f.is_file():
            raise FileNotFoundError(f"{f}: missing; rebuild the dataset")
        return np.load(f, mmap_mode="r" if mmap else None)

    return Split(
        path=path,
        meta=meta,
        inputs=arr("inputs", True),
        labels=arr("labels", True),
        puzzle_identifiers=arr("puzzle_identifiers", False),
        puzzle_indices=arr("puzzle_indices", False),
        group_indices=arr("group_indices", False),
    )


def load_identifiers(dataset_dir: str | Path) -> list[str]:
    """identifiers.json: index = puzzle id, value = puzzle name ([0] is '<blank>')."""
    return json.loads((Path(dataset_dir) / "identifiers.json").read_text())


def load_test_puzzles(dataset_dir: str | Path) -> dict:
    """test_puzzles.json: the un-augmented test-set tasks with outputs filled (real or dummy)."""
    return json.loads((Path(dataset_dir) / "test_puzzles.json").read_text())


def collate(
    inputs: np.ndarray, labels: np.ndarray, puzzle_ids: np.ndarray, batch_size: int,
    ignore_label_id: int | None = 0
) -> dict[str, np.ndarray]:
    """Upstream collate: int32, labels == ignore_label_id -> -100, pad to `batch_size` with blank rows."""
    n = inputs.shape[0]
    if n > batch_size:
        raise ValueError(f"collate got {n} rows for a batch of {batch_size}")
    seq_len = inputs.shape[1]
    out_inputs = np.zeros((batch_size, seq_len), dtype=np.int32)
    out_labels = np.full((batch_size, seq_len), IGNORE_LABEL_ID, dtype=np.int32)
    out_ids = np.full((batch_size,), BLANK_ID, dtype=np.int32)
    out_inputs[:n] = inputs
    lab = np.asarray(labels, dtype=np.int32)
    if ignore_label_id is not None:
        lab = np.where(lab == ignore_label_id, IGNORE_LABEL_ID, lab)
    out_labels[:n] = lab
    out_ids[:n] = puzzle_ids
    return {"inputs": out_inputs, "labels": out_labels, "puzzle_identifiers": out_ids}


def rank_slice(global_batch_size: int, rank: int, world_size: int) -> slice:
    """Upstream: every rank builds the same global batch and takes a contiguous slice."""
    if global_batch_size % world_size:
        raise ValueError(
            f"global batch {global_batch_size} is not divisible by world size {world_size}; "
            "choose a global batch that is a multiple of the number of processes"
        )
    local = global_batch_size // world_size
    return slice(rank * local, (rank + 1) * local)


def iter_test_batches(
    split: Split, global_batch_size: int, rank: int = 0, world_size: int = 1
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
    """Upstream's test iteration: sequential chunks of the global batch, each rank its slice.

    Yields (batch, n_valid) where n_valid counts this rank's non-padding rows; the last
    chunk is padded with blank rows (id 0) which the evaluator ignores.
    """
    ids = split.example_puzzle_ids()
    local = rank_slice(global_batch_size, rank, world_size)
    local_size = local.stop - local.start
    ignore = split.meta.get("ignore_label_id", 0)
    for start in range(0, split.num_examples, global_batch_size):
        end = min(start + global_batch_size, split.num_examples)
        lo = min(start + local.start, end)
        hi = min(start + local.stop, end)
        batch = collate(split.inputs[lo:hi], split.labels[lo:hi], ids[lo:hi], local_size, ignore)
        yield batch, hi - lo


# ---------------------------------------------------------------------------------------
# Train sampling (upstream `PuzzleDataset._iter_train`, docs/fidelity.md#train-sampling), resumable.
#
# One *iteration* covers `epochs_per_iter` (= eval_interval) epochs; an epoch is one pass
# over the groups (original tasks). Iteration i (0-based) draws from its own
# Generator(Philox(seed + i + 1)) (upstream's persistent worker counts iterations from 1):
#   1. group_order = concatenation of `epochs_per_iter` permutations of the groups;
#   2. greedy packing, group by group: one random puzzle (augmented version) of the group,
#      `rng.integers(start, end)`, then its examples in a random order, truncated to the
#      room left in the global batch (the leftover examples are dropped);
#   3. the final incomplete batch is dropped.
# Deliberate difference: upstream draws the example order with NumPy's *global* RNG inside
# its DataLoader worker, which is not reproducible from `seed` and can differ across ranks
# (docs/fidelity.md#seeds). Here the same seeded Generator draws it, so every rank builds the identical
# global batch and a resumed run can continue the exact stream.
# ---------------------------------------------------------------------------------------


def _rng_state_to_plain(state: dict) -> dict:
    """A bit-generator state with numpy arrays turned into lists (JSON / pickle friendly)."""
    return {k: (_rng_state_to_plain(v) if isinstance(v, dict)
                else v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in state.items()}


def _rng_state_from_plain(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        if isinstance(v, dict):
            out[k] = _rng_state_from_plain(v)
        elif isinstance(v, list):
            out[k] = np.array(v, dtype=np.uint64)
        else:
            out[k] = v
    return out


@dataclass
class TrainBatch:
    """One global batch: example rows and the puzzle identifier of each row (both [global_batch])."""

    example_indices: np.ndarray  # int64 rows of split.inputs / split.labels
    puzzle_identifiers: np.ndarray  # int32

    def collate(self, split: Split, rows: slice) -> dict[str, np.ndarray]:
        """Collate the rows `rows` of this global batch (a rank's or micro-batch's slice)."""
        idx = self.example_indices[rows]
        order = np.argsort(idx, kind="stable")  # read the memmap in ascending order, then restore
        inv = np.empty_like(order)
        inv[order] = np.arange(order.size)
        inputs = np.asarray(split.inputs[idx[order]])[inv]
        labels = np.asarray(split.labels[idx[order]])[inv]
        return collate(inputs, labels, self.puzzle_identifiers[rows], idx.size,
                       split.meta.get("ignore_label_id", 0))


class TrainSampler:
    """Upstream's train batches as a resumable stream of global batches.

    `position` = {"iteration", "batch", "cursor", "rng"}: the iteration index, how many
    batches of it were already produced, the next index into its group order and the
    Generator state at that point (None at an iteration's start). Saving it after a
    step and passing it back to `iter_iteration` continues the stream exactly.
    """

    def __init__(self, split: Split, global_batch_size: int, epochs_per_iter: int, seed: int):
        self.split = split
        self.global_batch_size = int(global_batch_size)
        self.epochs_per_iter = int(epochs_per_iter)
        self.seed = int(seed)
        self._group_starts = split.group_indices[:-1].astype(np.int64)
        self._group_ends = split.group_indices[1:].astype(np.int64)
        self._puzzle_starts = split.puzzle_indices[:-1].astype(np.int64)
        self._puzzle_sizes = np.diff(split.puzzle_indices).astype(np.int64)

    @staticmethod
    def start_position(iteration: int = 0) -> dict:
        return {"iteration": int(iteration), "batch": 0, "cursor": 0, "rng": None}

    def _group_order(self, iteration: int) -> tuple[np.random.Generator, np.ndarray]:
        rng = np.random.Generator(np.random.Philox(self.seed + iteration + 1))
        n = self.split.num_groups
        order = np.concatenate([rng.permutation(n).astype(np.int32) for _ in range(self.epochs_per_iter)])
        return rng, order

    def iter_iteration(self, position: dict) -> Iterator[tuple[TrainBatch, dict]]:
        """Yield (global batch, position after it) for the rest of `position`'s iteration."""
        it = int(position["iteration"])
        rng, order = self._group_order(it)
        if position.get("rng") is not None:
            rng.bit_generator.state = _rng_state_from_plain(position["rng"])
        cursor, batch_no = int(position["cursor"]), int(position["batch"])
        gbs = self.global_batch_size
        while cursor < order.size:
            rows, pids, size = [], [], 0
            while cursor < order.size and size < gbs:
                g = order[cursor]
                cursor += 1
                puzzle = int(rng.integers(self._group_starts[g], self._group_ends[g]))
                n = int(self._puzzle_sizes[puzzle])
                take = min(n, gbs - size)
                rows.append(self._puzzle_starts[puzzle] + rng.permutation(n)[:take])
                pids.append(np.full(take, self.split.puzzle_identifiers[puzzle], dtype=np.int32))
                size += take
            if size < gbs:  # upstream drops the last incomplete batch
                return
            batch_no += 1
            pos = {"iteration": it, "batch": batch_no, "cursor": cursor,
                   "rng": _rng_state_to_plain(rng.bit_generator.state)}
            yield TrainBatch(np.concatenate(rows).astype(np.int64), np.concatenate(pids)), pos
