"""Reading a built TRM dataset, and the batches upstream's loader makes from it.

A dataset directory (written by `python -m dataset_builder`) holds `train/` and `test/`
splits of memory-mapped arrays (trm-upstream.md §7.6):

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

IGNORE_LABEL_ID = -100
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
    def num_puzzles(self) -> int:
        return int(self.puzzle_identifiers.shape[0])

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
    inputs: np.ndarray, labels: np.ndarray, puzzle_ids: np.ndarray, batch_size: int, ignore_label_id: int | None = 0
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
