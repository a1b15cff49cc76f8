"""Checkpoints: the kit's directory format, upstream `step_N` files, slim exports.

    from trm.checkpoint import save_checkpoint, load_checkpoint, load_train_state, export_slim
    save_checkpoint("runs/x/step_1000", model, meta={"step": 1000, "train_config": cfg},
                    ema_weights=ema.shadows, train_state={...}, dataset_dir="data/arc2")
    model, meta = load_checkpoint("runs/x/step_1000", dataset_dir="data/arc2")
    model, meta = load_checkpoint("hf/arc_v2_public/step_723914")      # upstream + all_config.yaml

Kit layout (one directory, written to a temp sibling, fsynced, then renamed into place):
    model.pt        TRM state_dict, kit key names, on CPU. The INFERENCE weights: the EMA shadows
                    when `ema_weights` is given, else the live parameters; buffers (puzzle table,
                    H_init/L_init) always come from the live model -- exactly what upstream's EMA
                    checkpoints hold (docs/fidelity.md#ema).
    train_state.pt  optional, opaque to this module: whatever the trainer passes. Convention:
                    {"model": raw state_dict (needed to resume when model.pt holds EMA weights),
                     "optimizers": [opt.state_dict() ...], "ema": shadows, "rng": ..., "step": int,
                     "loader": position}. Loaded with load_train_state() (not weights-only).
    meta.json       written last: format, kind (full|slim), model_config, weights (ema|raw),
                    dataset {fingerprint = sha256 of identifiers.json, num_puzzle_identifiers,
                    path}, git {sha, dirty}, torch version, the caller's `meta` (step,
                    train_config, metrics...), and files {name: {bytes, sha256}}. A loader checks
                    every listed file, so a truncated or partial checkpoint is refused.
Slim layout (export_slim): model.pt without the puzzle table plus `puzzle_emb.mean_row`
(~27 MB instead of ~2.4 GB at ARC-AGI-2 scale); loading one needs the new table's row count.

Puzzle-table rows: a checkpoint only makes sense with the identifiers.json it was trained on.
A row-count or fingerprint mismatch with the target dataset is an error unless
reset_puzzle_emb="mean": then every row gets the mean of the checkpoint's rows 1..N-1 and row 0
("<blank>", never trained, used only by padding rows) stays zero. Upstream instead silently
mean-fills every row including row 0, with the mean taken over all rows (upstream issue #55).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import shutil
import struct
import time
import uuid
import zipfile
from pathlib import Path

import torch
from torch import Tensor, nn

from trm.errors import EXIT_CHECKPOINT, EXIT_USAGE, UserError, disk_full, is_no_space
from trm.grids import AUG_SEP
from trm.model import TRM, UPSTREAM_NAMES, ModelConfig, count_parameters
from trm.util import git_state, sha256_file

FORMAT = "trm-kit-checkpoint/1"
MODEL_FILE, TRAIN_FILE, META_FILE = "model.pt", "train_state.pt", "meta.json"
TABLE_KEY, MEAN_KEY = "puzzle_emb.weights", "puzzle_emb.mean_row"
# upstream state-dict names -> kit names (after the wrapper prefixes are stripped)
KEY_RENAMES = [("embed_tokens.embedding_weight", "embed_tokens.weight"),
               ("embed_pos.embedding_weight", "embed_pos.weight"),
               ("L_level.layers.", "net.blocks."), (".self_attn.", ".attn.")]
_RESERVED_META = {"format", "kind", "model_config", "files"}


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is incomplete, truncated, corrupt or of an unknown layout (exit 3)."""

    exit_code = EXIT_CHECKPOINT


class CheckpointNotFound(CheckpointError):
    """No checkpoint at the path given: a usage error (exit 2), not an unusable checkpoint."""

    exit_code = EXIT_USAGE


class PuzzleTableMismatch(UserError, ValueError):
    """The checkpoint's puzzle table was trained on another dataset (exit 2: a usage error, which
    the caller's option fixes: reset_puzzle_emb="mean")."""


def upstream_key_to_kit(key: str) -> str:
    """'_orig_mod.model.inner.L_level.layers.0.self_attn.o_proj.weight'
    -> 'net.blocks.0.attn.o_proj.weight'."""
    for prefix in ("_orig_mod.", "model.inner.", "inner."):
        key = key.removeprefix(prefix)
    for old, new in KEY_RENAMES:
        key = key.replace(old, new)
    return key


def kit_key_to_upstream(key: str, prefix: str = "_orig_mod.model.inner.") -> str:
    for old, new in KEY_RENAMES:
        key = key.replace(new, old)
    return prefix + key


def dataset_fingerprint(dataset_dir: str | Path) -> str:
    """sha256 (hex) of the builder's identifiers.json: it fixes what every puzzle id means."""
    f = Path(dataset_dir) / "identifiers.json"
    if not f.is_file():
        raise FileNotFoundError(f"{f} not found: dataset_dir must be a builder output directory")
    return hashlib.sha256(f.read_bytes()).hexdigest()


def _dataset_info(dataset_dir: str | Path, with_tasks: bool = False) -> dict:
    d = Path(dataset_dir)
    rows = json.loads((d / "train" / "dataset.json").read_text())["num_puzzle_identifiers"]
    info = {"fingerprint": dataset_fingerprint(d), "num_puzzle_identifiers": rows, "path": str(d)}
    if with_tasks:
        # on save only: the tasks whose puzzle rows this table learned ("<task>" / "<task>|||<aug>";
        # "<blank>" is row 0), by which validation tells seen tasks from unseen ones (trm.ttt)
        names = json.loads((d / "identifiers.json").read_text())
        info["task_ids"] = sorted({n.split(AUG_SEP)[0] for n in names[1:] if isinstance(n, str)})
    return info


def _git_info() -> dict | None:
    state = git_state()
    return state if state["sha"] else None


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tensor_bytes(obj) -> int:
    """Bytes of the tensors inside `obj` (what torch.save will need, give or take the pickle)."""
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _write_atomic_dir(path: Path, objects: dict[str, object], meta: dict) -> Path:
    """torch.save each object into a temp sibling dir, then meta.json, then rename over `path`.

    Any failure (a full disk included: DiskFullError with the size needed) removes the temp dir
    and leaves `path` and every other checkpoint as they were.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        files = {}
        for name, obj in objects.items():
            with open(tmp / name, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
            files[name] = {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
        meta = {**meta, "files": files}
        with open(tmp / META_FILE, "w") as f:
            json.dump(meta, f, indent=1, default=str)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        old = None
        if path.exists():  # a directory can't be renamed onto a non-empty one: move it aside first
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            path.rename(old)
        try:
            tmp.rename(path)
        except BaseException:
            if old is not None:  # put the previous checkpoint back under its name
                old.rename(path)
            raise
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_no_space(e):
            raise disk_full(path, sum(_tensor_bytes(o) for o in objects.values()), "the checkpoint") from e
        raise
    return path


def _unwrap(model: nn.Module) -> TRM:
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = getattr(model, "model", model)  # TRMWithLoss
    if not isinstance(model, TRM):
        raise TypeError(f"expected a TRM (or a wrapper of one), got {type(model).__name__}")
    return model


def save_checkpoint(path: str | Path, model: nn.Module, *, meta: dict | None = None,
                    train_state: dict | None = None, ema_weights: dict[str, Tensor] | None = None,
                    dataset_dir: str | Path | None = None) -> Path:
    """Write a kit checkpoint directory atomically (see the module docstring); returns its path.

    ema_weights: EMA shadows of the parameters ({name: tensor}; names as in named_parameters() of
    the TRM, a TRMWithLoss or a compiled wrapper); they replace the parameters in model.pt.
    """
    trm = _unwrap(model)
    sd = {k: v.detach().cpu() for k, v in trm.state_dict().items()}  # no copy on CPU: 2.4 GB table
    if ema_weights:
        for name, value in ema_weights.items():
            key = name.removeprefix("_orig_mod.").removeprefix("model.")
            if key not in sd:
                raise KeyError(f"ema_weights has {name!r}, which is not a TRM state-dict key")
            sd[key] = value.detach().to(device="cpu", dtype=sd[key].dtype)
    clash = _RESERVED_META & set(meta or {})
    if clash:
        raise ValueError(f"meta may not set reserved keys {sorted(clash)}")
    out = {"format": FORMAT, "kind": "full", "model_config": trm.config.to_dict(),
           "weights": "ema" if ema_weights else "raw", "num_parameters": count_parameters(trm),
           "git": _git_info(), "torch_version": torch.__version__,
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if dataset_dir is not None:
        out["dataset"] = _dataset_info(dataset_dir, with_tasks=True)
    out.update(meta or {})
    objects = {MODEL_FILE: sd} | ({TRAIN_FILE: train_state} if train_state is not None else {})
    return _write_atomic_dir(Path(path), objects, out)


def _read_kit_meta(d: Path, verify: bool) -> dict:
    if not (d / META_FILE).is_file():
        raise CheckpointError(f"{d} has no {META_FILE}: not a kit checkpoint, or its save did not "
                              "finish (meta.json is written last)")
    try:
        meta = json.loads((d / META_FILE).read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{d / META_FILE} is corrupt: {e}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{d}: unknown checkpoint format {meta.get('format')!r}")
    for name, info in meta["files"].items() if verify else ():
        f = d / name
        if not f.is_file():
            raise CheckpointError(f"checkpoint {d} is incomplete: {name} is missing")
        if f.stat().st_size != info["bytes"]:
            raise CheckpointError(f"checkpoint {d} is truncated or corrupt: {name} has "
                                  f"{f.stat().st_size} bytes, meta.json says {info['bytes']}")
        if sha256_file(f) != info["sha256"]:
            raise CheckpointError(f"checkpoint {d} is corrupt: {name} fails its sha256 check")
    return meta


# ----------------------------------------------------------------------- reading what a user brings
# Every checkpoint file goes through _torch_load and every upstream config through read_yaml, and
# the architecture is checked against the tensors before a model is built: each way a published or
# copied checkpoint can be unusable is told here, once, as one line (which file, what is wrong with
# it, what to do), and every entry point -- trm.evaluate, trm.train, the Kaggle bundle, the
# competition notebook -- gets that line (docs/checkpoints.md).

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (the format since torch 1.6)
REDOWNLOAD = "download it again and compare its size with the one the source lists"
# bytes per element of the storage types torch's data.pkl names (torch.<Name>Storage)
_STORAGE_BYTES = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2,
                  "Char": 1, "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16}


def _torch_load(f: Path, map_location, *, weights_only: bool = True, mmap: bool = False):
    """torch.load(f), or a CheckpointError saying in one line why `f` is not a usable torch file.
    mmap: map the file instead of reading it when it is a zip (shapes without reading the bytes)."""
    problem = _torch_file_problem(f)
    if problem:
        raise CheckpointError(f"checkpoint file {f} {problem}")
    if mmap:
        with open(f, "rb") as fh:
            mmap = fh.read(4) == ZIP_MAGIC  # torch maps zip files only, not the legacy format
    try:
        return torch.load(f, map_location=map_location, weights_only=weights_only, mmap=mmap)
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:200]  # first sentence
        raise CheckpointError(f"checkpoint file {f} is corrupt: torch cannot read it ({why}); {REDOWNLOAD}") \
            from None


def _torch_file_problem(f: Path) -> str | None:
    """Why `f` cannot be a complete torch.save file, in the user's terms, or None if it may be one."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(256)
    if not head:
        return f"is empty (0 bytes): the download or copy wrote nothing; {REDOWNLOAD}"
    if head.startswith(ZIP_MAGIC):
        try:
            zipfile.ZipFile(f).close()  # finds the archive's end record, the last bytes of a complete file
            return None
        except zipfile.BadZipFile:
            need = _bytes_listed(f)
            if need is not None and need > size:
                return (f"is incomplete: {size:,} bytes, but the tensors it lists need at least "
                        f"{need:,} bytes (a download or copy that stopped early); {REDOWNLOAD}")
            return f"is incomplete: {size:,} bytes and the end of its zip archive is missing; {REDOWNLOAD}"
    if head[:1] == b"\x80":  # a pickle: torch's legacy (pre-1.6) format, which torch.load reads
        return None
    return f"is not a torch checkpoint: it is {_what_it_is(head)}"


def _what_it_is(head: bytes) -> str:
    """What a file that is not a torch checkpoint is, from its first bytes, and what to do."""
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")):
        return ("a web page (HTML) saved under the checkpoint's name, e.g. a sign-in, terms or error page: "
                "download the file itself (signed in, or with HF_TOKEN for a gated Hugging Face repo)")
    if text.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file it points to: fetch the file with `git lfs pull`"
    not_zip = f"not the zip archive torch.save writes; {REDOWNLOAD}"
    try:
        return f"text starting {head.decode('utf-8').strip().splitlines()[0][:40]!r}, {not_zip}"
    except (UnicodeDecodeError, IndexError):
        return f"binary data starting {head[:8].hex(' ')}, {not_zip}"


def _bytes_listed(f: Path) -> int | None:
    """The least a complete torch.save zip file of this start needs: its first record (data.pkl, the
    pickled state_dict) plus every tensor storage that pickle lists. None when that cannot be told
    (the pickle itself is cut off or unreadable)."""
    with open(f, "rb") as fh:
        header = fh.read(30)  # the zip local file header: name and extra-field lengths at bytes 26-29
        if len(header) < 30:
            return None
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        fh.seek(30 + name_len + extra_len)
        start = fh.tell()
        pkl = io.BytesIO(fh.read(64 << 20))  # data.pkl holds names and shapes only: kilobytes
    lister = _StorageLister(pkl)
    try:
        lister.load()
    except Exception:  # noqa: BLE001 -- a cut-off or foreign pickle: the size cannot be told, nothing else
        return None
    return start + pkl.tell() + sum(lister.storages.values())


class _StandIn:
    """Whatever data.pkl would build: takes any arguments and state and does nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass


class _StorageLister(pickle.Unpickler):
    """Reads torch's data.pkl without importing or running anything it names (every global is a
    stand-in) and records each tensor storage it lists -- a persistent id ('storage',
    torch.<Dtype>Storage, key, device, numel) -- as {key: bytes}."""

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, int] = {}

    def find_class(self, module, name):
        return type(name, (_StandIn,), {})

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            dtype = getattr(pid[1], "__name__", "").removesuffix("Storage")
            self.storages[str(pid[2])] = int(pid[4]) * _STORAGE_BYTES.get(dtype, 1)
        return _StandIn()


def read_yaml(path: Path) -> dict:
    """Upstream's all_config.yaml. PyYAML is imported here only: the runtime needs just torch + numpy."""
    try:
        import yaml
    except ImportError as e:
        raise CheckpointError(f"reading {path} needs PyYAML: pip install pyyaml "
                              "(or pass config= to load_checkpoint)") from e
    fix = "put back the all_config.yaml that the checkpoint's training run wrote beside it"
    try:
        return yaml.safe_load(Path(path).read_text())
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not a text file, so not upstream's all_config.yaml: {fix}") \
            from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(e, "problem", None) or e
        raise CheckpointError(f"{path} is not valid YAML{where} ({what}): {fix}") from None


@dataclasses.dataclass(frozen=True)
class _ConfigOrigin:
    """Where a checkpoint's architecture was read: named in errors, with its keys spelt as there."""

    label: str  # e.g. "/ckpt/all_config.yaml"
    prefix: str  # how a ModelConfig field is spelt there: "arch." (upstream names) or "model_config."
    fix: str  # what to do when it is wrong

    def key(self, field: str) -> str:
        return self.prefix + (UPSTREAM_NAMES.get(field, field) if self.prefix == "arch." else field)


def _upstream_config(f: Path, config) -> tuple[ModelConfig, _ConfigOrigin]:
    """The architecture of upstream file `f`: `config` when given, else all_config.yaml beside it."""
    if config is None:
        yaml_file = f.parent / "all_config.yaml"
        if not yaml_file.is_file():
            raise CheckpointError(f"no config for {f}: pass config= or put all_config.yaml beside it")
        origin = _ConfigOrigin(str(yaml_file), "arch.",
                               f"put the all_config.yaml of the run that saved {f.name} beside it")
        data = read_yaml(yaml_file)
        config = data.get("arch") if isinstance(data, dict) else None
        if not isinstance(config, dict):
            raise CheckpointError(f"{yaml_file} has no `arch:` mapping, so it is not upstream's "
                                  f"all_config.yaml: {origin.fix}")
    else:
        origin = _ConfigOrigin("the config given", "", f"give the config {f.name} was trained with")
    if isinstance(config, ModelConfig):
        return config, origin
    try:
        return ModelConfig.from_upstream(config), origin
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{origin.label} describes an invalid architecture ({e}): {origin.fix}") \
            from None


def _read_upstream(f: Path, config, map_location, mmap: bool = False) -> tuple[ModelConfig, dict, dict]:
    """An upstream `step_N` state_dict; config from `config` or all_config.yaml beside the file."""
    raw = _torch_load(f, map_location, mmap=mmap)
    if not isinstance(raw, dict) or not all(isinstance(v, Tensor) for v in raw.values()):
        raise CheckpointError(f"{f} is a torch file but not a model state_dict (a mapping of names to "
                              "tensors): give the step_N file the training run saved")
    sd = {upstream_key_to_kit(k): v for k, v in raw.items()}
    cfg, origin = _upstream_config(f, config)
    if "embed_tokens.weight" not in sd:
        raise CheckpointError(f"{f} is a state_dict without embed_tokens.weight, so not a TRM checkpoint")
    # vocab and table size are injected from the dataset at run time upstream: read them off the tensors
    fix = {"vocab_size": sd["embed_tokens.weight"].shape[0]}
    if TABLE_KEY in sd:
        fix.update(num_puzzle_identifiers=sd[TABLE_KEY].shape[0], puzzle_emb_ndim=sd[TABLE_KEY].shape[1])
    if "embed_pos.weight" in sd:
        fix["seq_len"] = sd["embed_pos.weight"].shape[0] - cfg.prefix_len
    try:
        cfg = dataclasses.replace(cfg, **fix)
    except ValueError as e:
        raise CheckpointError(f"{origin.label} contradicts the weights in {f}: with their "
                              f"{', '.join(f'{k} {v}' for k, v in fix.items())}, {e}; {origin.fix}") from None
    _check_shapes(f, cfg, sd, origin)
    return cfg, sd, {"format": "upstream", "kind": "full", "source": f.name, "model_config": cfg.to_dict()}


def _arch_shown(shapes: dict[str, tuple]) -> list[tuple[str, object, str]]:
    """(ModelConfig field, its value as the tensors show it, which tensors show it) for the
    architecture fields a state_dict reveals by its shapes and names."""
    blocks = sorted({k.split(".")[2] for k in shapes if k.startswith("net.blocks.")})
    shown = []
    if "embed_tokens.weight" in shapes:
        s = list(shapes["embed_tokens.weight"])
        shown.append(("hidden_size", s[1],
                      f"the weights have hidden size {s[1]} (embed_tokens.weight is {s})"))
    shown.append(("n_layers", len(blocks), f"the weights hold {len(blocks)} block(s) (net.blocks.*)"))
    mlp_t = any(".mlp_t." in k for k in shapes)
    mixer = ("mix tokens with an MLP (net.blocks.*.mlp_t)" if mlp_t
             else "are attention layers (net.blocks.*.attn)")
    shown.append(("mlp_t", mlp_t, f"the weights' blocks {mixer}"))
    for key, dim in ((TABLE_KEY, 1), (MEAN_KEY, 0)):
        if key in shapes:
            s = list(shapes[key])
            shown.append(("puzzle_emb_ndim", s[dim],
                          f"the weights' puzzle embedding is {s[dim]} wide ({key} is {s})"))
    return shown


# which ModelConfig fields set a tensor's shape, beyond the ones _arch_shown reads off the tensors
_SHAPED_BY = ((".mlp_t.", ("expansion", "seq_len", "puzzle_emb_len")), (".mlp.", ("expansion",)),
              ("embed_pos.", ("seq_len", "puzzle_emb_len", "pos_encodings")))


def _check_shapes(f: Path, cfg: ModelConfig, sd: dict, origin: _ConfigOrigin) -> None:
    """Every tensor of `sd` must have the shape the architecture `cfg` gives it; otherwise one line
    naming the config key that contradicts which tensor (before any model is built or loaded)."""
    with torch.device("meta"):  # shapes only: no memory, no init
        ref = {k: tuple(v.shape) for k, v in
               TRM(dataclasses.replace(cfg, num_puzzle_identifiers=1)).state_dict().items()}
    ref.pop(TABLE_KEY, None)  # its row count is the dataset's business (load_checkpoint)
    got = {k: tuple(v.shape) for k, v in sd.items()}
    shown = _arch_shown(got)
    if {k: v for k, v in got.items() if k not in (TABLE_KEY, MEAN_KEY)} == ref \
            and all(getattr(cfg, field) == value for field, value, _ in shown):
        return
    where = f"{origin.label} contradicts the weights in {f}"
    for field, value, evidence in shown:
        if getattr(cfg, field) != value:
            raise CheckpointError(f"{where}: {origin.key(field)} is {getattr(cfg, field)!r} but {evidence}; "
                                  f"{origin.fix}")
    learned = "embed_pos.weight" in got
    if learned != (cfg.pos_encodings == "learned"):
        has = "hold learned positions (embed_pos.weight)" if learned else "hold no learned positions " \
            "(no embed_pos.weight)"
        raise CheckpointError(f"{where}: {origin.key('pos_encodings')} is {cfg.pos_encodings!r} but the "
                              f"weights {has}; {origin.fix}")
    for k in ref:
        if k in got and got[k] != ref[k]:
            fields = next((fs for part, fs in _SHAPED_BY if part in k), ())
            says = ", ".join(f"{origin.key(x)} {getattr(cfg, x)!r}" for x in fields) or "its architecture"
            raise CheckpointError(f"{where}: {k} is {list(got[k])} in the file, but {says} make(s) it "
                                  f"{list(ref[k])}; {origin.fix}")
    missing = sorted(set(ref) - set(got))
    unexpected = sorted(set(got) - set(ref) - {TABLE_KEY, MEAN_KEY})
    raise CheckpointError(f"{where}: tensors missing {missing[:4]}, unexpected {unexpected[:4]}; "
                          f"{origin.fix}")


def _read_source(path: Path, config, map_location, verify: bool,
                 mmap: bool = False) -> tuple[ModelConfig, dict, dict]:
    if path.is_dir():
        if not (path / META_FILE).exists() and not (path / MODEL_FILE).exists():
            steps = sorted(p.name for p in path.glob("step_*"))
            raise CheckpointError(f"{path} is not a kit checkpoint" +
                                  (f"; pass one of its upstream files {steps[:5]}" if steps else ""))
        meta = _read_kit_meta(path, verify)
        origin = _ConfigOrigin(str(path / META_FILE), "model_config.", "its meta.json does not belong to "
                               "its model.pt: restore the checkpoint folder as saved")
        try:
            cfg = ModelConfig.from_dict(meta["model_config"])
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{origin.label} holds no valid model_config ({e}): {origin.fix}") from None
        sd = _torch_load(path / MODEL_FILE, map_location, mmap=mmap)
        _check_shapes(path, cfg, sd, origin)
        return cfg, sd, meta
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    return _read_upstream(path, config, map_location, mmap=mmap)


def check_checkpoint(path: str | Path, *, config: ModelConfig | dict | None = None) -> dict:
    """Everything load_checkpoint checks about a checkpoint's files -- complete, a torch file, a
    readable config that fits the tensors -- without reading the tensors' bytes (memory-mapped):
    a CheckpointError (one line) if it is unusable, else its meta. For callers that should fail
    before starting work (the Kaggle bundles and simulation, the competition notebook)."""
    _, _, meta = _read_source(Path(path), config, "cpu", True, mmap=True)
    return meta


def mean_table(table: Tensor, rows: int) -> Tensor:
    """A [rows, D] table: every row = mean of table rows 1.. (row 0 = blank stays zero)."""
    mean = table[1:].mean(0) if table.shape[0] > 1 else table.mean(0)
    out = mean.expand(rows, -1).clone()
    out[0] = 0
    return out


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu",
                    config: ModelConfig | dict | None = None, num_puzzle_identifiers: int | None = None,
                    reset_puzzle_emb: str | None = None, dataset_dir: str | Path | None = None,
                    overrides: dict | None = None, verify: bool = True) -> tuple[TRM, dict]:
    """Rebuild a TRM from a kit directory (full or slim) or an upstream `step_N` file.

    num_puzzle_identifiers / dataset_dir give the target dataset (its train/dataset.json row
    count and identifiers.json fingerprint); a mismatch with the checkpoint's table is an error
    unless reset_puzzle_emb="mean". A slim checkpoint always mean-fills and needs one of them.
    config: for upstream files only (else all_config.yaml beside the file is read).
    overrides: ModelConfig fields to change, e.g. {"forward_dtype": "float16"} on a T4.
    map_location: device for the returned model (a str or torch.device). Returns (model, meta).
    """
    path = Path(path)
    if reset_puzzle_emb not in (None, "mean"):
        raise ValueError(f"reset_puzzle_emb must be None or 'mean', got {reset_puzzle_emb!r}")
    cfg, sd, meta = _read_source(path, config, "cpu", verify)
    target, ds = num_puzzle_identifiers, None
    if dataset_dir is not None:
        ds = _dataset_info(dataset_dir)
        if target is not None and target != ds["num_puzzle_identifiers"]:
            raise ValueError(f"num_puzzle_identifiers={target} contradicts {dataset_dir} "
                             f"({ds['num_puzzle_identifiers']} rows)")
        target = ds["num_puzzle_identifiers"]

    table = sd.pop(TABLE_KEY, None)
    mean_row = sd.pop(MEAN_KEY, None)
    if mean_row is not None:  # slim: no table to check, always a fresh mean-filled one
        if target is None:
            raise ValueError(f"{path} is a slim checkpoint: pass num_puzzle_identifiers= or dataset_dir=")
        table = mean_table(torch.stack([torch.zeros_like(mean_row), mean_row]), target)
    elif table is not None:
        ck_rows, ck_ds = table.shape[0], meta.get("dataset") or {}
        if reset_puzzle_emb == "mean":
            table = mean_table(table, target or ck_rows)
        else:
            row_bad = target is not None and target != ck_rows
            fp_bad = ds is not None and ck_ds.get("fingerprint") not in (None, ds["fingerprint"])
            if row_bad or fp_bad:
                raise PuzzleTableMismatch(
                    f"checkpoint {path} was trained on a dataset with {ck_rows} puzzle ids "
                    f"(identifiers.json sha256 {ck_ds.get('fingerprint', 'unknown')}"
                    + (f", built at {ck_ds['path']}" if ck_ds.get("path") else "") + "), but the target "
                    + (f"dataset {ds['path']} has {ds['num_puzzle_identifiers']} ids "
                       f"(sha256 {ds['fingerprint']})"
                       if ds else f"needs {target} ids") + ". Puzzle ids only mean something with the exact "
                    "identifiers.json the checkpoint was trained on: use that dataset (same ARC inputs, "
                    "subsets, seed and num_aug), or pass reset_puzzle_emb='mean' to start every puzzle "
                    "from the mean embedding (new tasks / fine-tuning).")
    if table is not None:
        cfg = dataclasses.replace(cfg, num_puzzle_identifiers=table.shape[0])
    cfg = dataclasses.replace(cfg, **(overrides or {}))

    model = TRM(dataclasses.replace(cfg, num_puzzle_identifiers=1))  # tiny table: swapped below
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if set(missing) - {TABLE_KEY} or unexpected:
        raise CheckpointError(f"{path}: state_dict mismatch; missing {sorted(set(missing) - {TABLE_KEY})}, "
                              f"unexpected {sorted(unexpected)}")
    if cfg.puzzle_emb_ndim > 0:
        if table is None:
            raise CheckpointError(f"{path}: no puzzle table ({TABLE_KEY}) although puzzle_emb_ndim > 0")
        model.puzzle_emb.weights = table.float().contiguous()
    model.config = cfg
    meta = {**meta, "model_config": cfg.to_dict()}
    return model.to(map_location), meta


def load_train_state(path: str | Path, *, map_location: str | torch.device = "cpu", verify: bool = True):
    """The trainer's train_state.pt of a kit checkpoint (checksum-verified), or None if absent."""
    path = Path(path)
    meta = _read_kit_meta(path, verify)
    if TRAIN_FILE not in meta["files"]:
        return None
    return _torch_load(path / TRAIN_FILE, map_location, weights_only=False)


def export_slim(src: str | Path, dst: str | Path, *, config: ModelConfig | dict | None = None) -> Path:
    """Copy a checkpoint without its puzzle table: weights + the mean puzzle row + config."""
    src = Path(src)
    cfg, sd, meta = _read_source(src, config, "cpu", True)
    table = sd.pop(TABLE_KEY, None)
    if table is not None:
        sd[MEAN_KEY] = mean_table(table, 2)[1].clone()
    # the source's identity: an upstream file's own bytes, a kit checkpoint's model.pt
    source_sha = (sha256_file(src) if src.is_file()
                  else meta.get("files", {}).get(MODEL_FILE, {}).get("sha256"))
    out = {"format": FORMAT, "kind": "slim", "model_config": cfg.to_dict(),
           "weights": meta.get("weights", "unknown"), "source": src.name,  # no machine paths in bundles
           "source_sha256": source_sha, "source_format": meta.get("format"),
           "source_puzzle_rows": None if table is None else table.shape[0],
           "dataset": meta.get("dataset"), "step": meta.get("step"),
           "git": meta.get("git") or _git_info(),  # the training commit when the source records it
           "exported_git": _git_info(),
           "torch_version": torch.__version__,
           # when the weights were made, from the source's own meta (None for an upstream file): no
           # export clock, so exporting the same checkpoint twice gives the same bytes
           "created": meta.get("created")}
    return _write_atomic_dir(Path(dst), {MODEL_FILE: sd}, out)


def find_checkpoint(path: str | Path, resumable: bool = True) -> Path:
    """A checkpoint to use: `path` itself (verified), or the newest complete one in a run dir.

    resumable: it must hold train_state.pt (`--resume`); otherwise weights suffice (evaluation),
    and an upstream `step_N` file is taken as given. Partial checkpoints (a kill mid-write leaves
    only a hidden temp dir, never a step_N dir, but a copied or truncated directory is possible)
    are skipped with a message; CheckpointError if nothing usable is found.
    """
    what = "--resume" if resumable else "checkpoint"

    def usable(d: Path) -> bool:  # verifies every file's size and sha256
        if resumable:
            return load_train_state(d) is not None
        _read_kit_meta(d, verify=True)
        return True

    path = Path(path)
    if not path.exists():  # a usage error (exit 2), not an unusable checkpoint
        raise FileNotFoundError(f"{what} {path}: no such checkpoint or run directory")
    root = path / "checkpoints" if (path / "checkpoints").is_dir() else None
    if root is None:
        if not resumable and path.is_file():
            return path
        if not (path / META_FILE).exists() and not (path / MODEL_FILE).exists():
            raise CheckpointError(f"{what} {path}: neither a run directory (no checkpoints/) "
                                  "nor a checkpoint")
        if not usable(path):
            raise CheckpointError(f"--resume {path}: the checkpoint has no train_state.pt (weights only); "
                                  "use +load_checkpoint= to start a new run from its weights")
        return path
    steps = sorted((int(d.name[5:]), d) for d in root.iterdir()
                   if d.is_dir() and d.name.startswith("step_") and d.name[5:].isdigit())
    for _, d in reversed(steps):
        try:
            if usable(d):
                return d
            print(f"{what}: skipping {d}: no train_state.pt")
        except (CheckpointError, OSError, RuntimeError) as e:
            print(f"{what}: skipping incomplete checkpoint {d}: {e}")
    raise CheckpointError(f"{what} {path}: no complete checkpoint in {root}")
