"""Training configuration: typed dataclasses, named presets, and command-line overrides.

    from trm.config import resolve_config
    cfg = resolve_config("paper-arc2", ["--arch.hidden_size", "64", "ema=True", "+run_name=x"])

Defaults follow upstream's config files (cfg_pretrain.yaml, arch/trm.yaml;
docs/fidelity.md#configuration-defaults),
except `arch.n_latent_steps` (L_cycles), whose default is the ARC recipe's 4 (trm.model). Presets
are the guide's recipes, in code. Overrides come in three spellings, freely mixed:

    --key value   --key=value   --flag          kit style (dashes or underscores; nested with dots)
    key=value     +key=value                    upstream/Hydra style, upstream names accepted:
                                                arch.L_cycles=4 ema=True data_paths="[data/x]"

An unknown key is a ConfigError listing the valid keys (the CLI exits 2).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import os
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from trm.errors import UserError
from trm.model import UPSTREAM_NAMES, ModelConfig
from trm.paths import PAPER_ARC1_SUBSETS, dataset_dir, default_dataset


class ConfigError(UserError, ValueError):
    """A bad override (unknown key, bad value); the CLI reports it and exits 2."""


@dataclass
class TrainConfig:
    arch: ModelConfig = field(default_factory=ModelConfig)
    # vocab_size, seq_len and num_puzzle_identifiers in `arch` are filled from the dataset.

    # data
    # a built dataset dir (trm.paths; upstream data_paths)
    data_path: str = field(default_factory=default_dataset)
    eval_data_path: str | None = None  # test split to evaluate on; None = data_path's (data_paths_test)

    # schedule (upstream names and defaults)
    global_batch_size: int = 768  # split evenly over ranks (and micro-batches)
    epochs: int = 100000  # one epoch = one pass over the groups (original tasks)
    eval_interval: int = 10000  # epochs per iteration; an eval (and checkpoint) after each
    min_eval_interval: int = 0  # first iteration index that is evaluated
    evaluate: bool = True  # upstream evaluators=[] -> False
    checkpoint_every_eval: bool = True  # else only the final checkpoint (+ checkpoint_every_steps)
    checkpoint_every_steps: int = 0  # kit: also checkpoint every N steps (0 = off), for resume
    stop_at_step: int = 0  # kit: stop (with a checkpoint) at this step; the schedule is unchanged

    # optimisers (AdamATan2 for the weights, sparse SignSGD for the puzzle table)
    lr: float = 1e-4
    lr_warmup_steps: int = 2000
    lr_min_ratio: float = 1.0  # 1.0 = constant after warm-up
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1
    puzzle_emb_lr: float = 1e-2
    puzzle_emb_weight_decay: float = 0.1
    # kit option (docs/training.md#muon---optimizer-muon): "muon" = torch.optim.Muon on the recurrent
    # blocks' 2-D weights (trm.optim.muon_params), AdamATan2 (lr, beta1/2, weight_decay) on the rest;
    # "adam_atan2" = upstream
    optimizer: str = "adam_atan2"
    muon_lr: float | None = None  # Muon's base LR, same warm-up/cosine schedule; None = `lr` (its update
    #   is scaled per matrix to an Adam step's RMS: trm.optim.MUON_LR_RULE)
    muon_momentum: float = 0.95  # Nesterov momentum (the Muon paper's and torch's default)
    muon_weight_decay: float = 0.1  # decoupled, p *= 1 - lr*wd, as weight_decay (upstream's 0.1)
    freeze_weights: bool = False  # train only the puzzle table
    ema: bool = False  # every command of upstream's README passes ema=True
    ema_rate: float = 0.999
    seed: int = 0

    # hardware / scale (kit)
    grad_accum_steps: int = 1  # micro-batches per rank per step; same global batch, same maths
    device: str = "auto"  # auto | cpu | cuda
    num_threads: int = 0  # torch CPU threads (0 = torch's default); 1 is fastest on a busy machine
    compile: bool | None = None  # torch.compile the recurrent net; None = auto: on CUDA (upstream compiles)
    compile_step: bool = False  # with compile on: the whole ACT step (bookkeeping, net, loss) as one graph,
    #   CUDA-graphed on CUDA (trm.model.CompiledStep; docs/performance.md), instead of the net alone
    eval_batch_size: int = 0  # 0 = global_batch_size (as upstream)

    # run bookkeeping
    run_name: str | None = None  # default: trm.runlock.default_run_name (<preset>-<UTC time>-<8 hex>)
    run_dir: str | None = None  # default $TRM_RUNS_DIR/<run_name> ($TRM_RUNS_DIR default runs)
    project_name: str = "trm"  # wandb project
    load_checkpoint: str | None = None  # initial weights only (kit checkpoint dir or upstream step_N)
    load_puzzle_emb: str = "strict"  # strict | mean: a table of another size is mean-initialised
    resume: str | None = None  # run dir or checkpoint dir to continue (weights, optimisers, data, step)
    log_interval: int = 1  # steps between metrics.jsonl lines / progress-bar updates
    progress: bool = True  # tqdm bar on rank 0; false: a progress line every progress_seconds instead
    progress_seconds: float = 20.0  # without the bar (notebooks, logs): seconds between progress lines
    wandb: bool = False  # log to Weights & Biases if the package is importable
    preset: str | None = None  # recorded: the preset this config started from


def _smoke_arch() -> ModelConfig:
    # CPU-fast: tiny width, one block, one outer cycle of two latent steps, two supervision steps,
    # fp32 (bf16 is only fast on CPUs with AMX). A batch-16 step takes 1.3 s on one CPU thread.
    return ModelConfig(hidden_size=64, num_heads=2, expansion=2.0, n_layers=1, n_outer_cycles=1,
                       n_latent_steps=2, halt_max_steps=2, halt_exploration_prob=0.1,
                       puzzle_emb_ndim=64, puzzle_emb_len=1, forward_dtype="float32")


def _paper(data_path: str) -> TrainConfig:
    # The guide's command: arch=trm arch.L_layers=2 arch.H_cycles=3 arch.L_cycles=4 ema=True, at
    # upstream's full schedule (checkpoint_every_eval=True, epochs 100000, eval_interval 10000).
    return TrainConfig(
        arch=ModelConfig(hidden_size=512, num_heads=8, expansion=4.0, n_layers=2, n_outer_cycles=3,
                         n_latent_steps=4, forward_dtype="bfloat16"),
        data_path=data_path, global_batch_size=768, lr=1e-4, puzzle_emb_lr=1e-2, weight_decay=0.1,
        puzzle_emb_weight_decay=0.1, beta1=0.9, beta2=0.95, lr_warmup_steps=2000, lr_min_ratio=1.0,
        ema=True, ema_rate=0.999, epochs=100000, eval_interval=10000, checkpoint_every_eval=True,
        log_interval=10)


PRESETS: dict[str, typing.Callable[[], TrainConfig]] = {
    "paper-arc2": lambda: _paper(default_dataset()),
    "paper-arc1": lambda: _paper(str(dataset_dir(PAPER_ARC1_SUBSETS, 1000))),
    # Tuned so tests/test_learns.py solves 4 recolouring ARC tasks (num_aug 8; 720 epochs = 566
    # steps): a high puzzle-table LR (every augmented version has its own colour map to find), a
    # cosine decay to 0.1x (without it the test score oscillates between 0.5 and 1.0) and a
    # short-horizon EMA (0.99). On those tasks every eval from step ~380 on solves all 4.
    "smoke": lambda: TrainConfig(
        arch=_smoke_arch(), data_path=default_dataset(), global_batch_size=16, epochs=720,
        eval_interval=80, lr=5e-3, lr_warmup_steps=20, lr_min_ratio=0.1, puzzle_emb_lr=0.1,
        weight_decay=0.1, puzzle_emb_weight_decay=0.1, ema=True, ema_rate=0.99, checkpoint_every_eval=True,
        log_interval=10),
}

# Upstream top-level names that differ from ours (value conversion in _apply).
_UPSTREAM_TOP = {"data_paths": "data_path", "data_paths_test": "eval_data_path",
                 "checkpoint_path": "run_dir", "evaluators": "evaluate"}
_ARCH_FROM_UPSTREAM = {up: kit for kit, up in UPSTREAM_NAMES.items()}
_IGNORED = {"arch", "arch.name", "arch.H_layers", "arch.batch_size", "arch.causal", "arch.loss.name"}


def valid_keys() -> list[str]:
    keys = [f.name for f in fields(TrainConfig) if f.name != "arch"]
    return sorted(keys) + sorted(f"arch.{f.name}" for f in fields(ModelConfig))


def _canonical(key: str) -> str:
    """Map a spelling (dashes, upstream names) to a TrainConfig path, or raise ConfigError."""
    key = key.lstrip("+").replace("-", "_")
    key = _UPSTREAM_TOP.get(key, key)
    if key.startswith("arch."):
        sub = key[5:]
        sub = {"loss.loss_type": "loss_type"}.get(sub, sub)
        key = "arch." + _ARCH_FROM_UPSTREAM.get(sub, sub)
    if key not in valid_keys():
        raise ConfigError(f"unknown config key {key!r}. Valid keys:\n  " + "\n  ".join(valid_keys()))
    return key


def _field_type(path: str):
    owner, name = (ModelConfig, path[5:]) if path.startswith("arch.") else (TrainConfig, path)
    return typing.get_type_hints(owner)[name]


def _coerce(path: str, raw, typ):
    """Convert an override (a string, or a JSON value from config.json) to the field's type."""
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:  # X | None
        if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("none", "null", "")):
            return None
        typ = next(a for a in typing.get_args(typ) if a is not type(None))
    text = raw.strip() if isinstance(raw, str) else raw
    try:
        if typ is bool:
            if isinstance(text, bool):
                return text
            return {"true": True, "1": True, "yes": True, "on": True,
                    "false": False, "0": False, "no": False, "off": False}[str(text).lower()]
        if typ is int:
            value = float(text)  # accepts 1e5
            if value != int(value):
                raise ValueError(text)
            return int(value)
        if typ is float:
            return float(text)
        if typ is str:
            return str(raw)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: cannot read {raw!r} as {typ.__name__}") from None
    raise ConfigError(f"{path}: unsupported type {typ}")


def _parse_list(raw: str) -> list[str]:
    """'[a,b]', '["a"]', 'a' -> list of strings (Hydra list syntax, quotes optional)."""
    s = raw.strip()
    if not (s.startswith("[") and s.endswith("]")):
        return [s]
    try:
        v = ast.literal_eval(s)
        return [str(x) for x in v]
    except (ValueError, SyntaxError):
        return [x.strip().strip("'\"") for x in s[1:-1].split(",") if x.strip()]


def _apply(cfg: TrainConfig, key: str, raw) -> None:
    """Set one override on cfg (in place)."""
    spelled = key.lstrip("+").replace("-", "_")
    if spelled in _IGNORED:
        if spelled == "arch" and str(raw) not in (
                "trm", "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"):
            raise ConfigError(f"arch={raw!r}: only the TRM architecture (arch=trm) is implemented")
        return
    path = _canonical(key)
    if spelled in ("data_paths", "data_paths_test") and isinstance(raw, str):
        items = _parse_list(raw)
        if len(items) > 1:
            raise ConfigError(f"{spelled}: one dataset only (upstream's several paths collide ids; "
                              "build one dataset from several subsets instead)")
        raw = items[0] if items else None
    if spelled == "evaluators" and isinstance(raw, str):
        raw = "false" if _parse_list(raw) == [] or raw.strip() == "[]" else "true"
    value = _coerce(path, raw, _field_type(path))
    if path.startswith("arch."):
        changes = {path[5:]: value}
        if path == "arch.hidden_size" and cfg.arch.puzzle_emb_ndim == cfg.arch.hidden_size:
            changes["puzzle_emb_ndim"] = value  # upstream: puzzle_emb_ndim: ${.hidden_size}
        try:
            cfg.arch = dataclasses.replace(cfg.arch, **changes)
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from None
    else:
        setattr(cfg, path, value)


def parse_overrides(tokens: typing.Sequence[str]) -> list[tuple[str, str | None]]:
    """Split argv-like tokens into (key, raw value) pairs; value None = bare flag (--flag)."""
    out, i = [], 0
    tokens = list(tokens)
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--"):
            body = tok[2:]
            if "=" in body:
                k, v = body.split("=", 1)
                out.append((k, v))
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--") and "=" not in tokens[i + 1]:
                out.append((body, tokens[i + 1]))
                i += 1
            else:
                out.append((body, None))
        elif "=" in tok:
            k, v = tok.split("=", 1)
            out.append((k, v))
        else:
            raise ConfigError(f"cannot parse argument {tok!r}: use --key value or key=value")
        i += 1
    return out


def apply_overrides(cfg: TrainConfig, overrides: typing.Sequence[str]) -> TrainConfig:
    for key, raw in parse_overrides(overrides):
        if raw is None:
            path = _canonical(key) if key.replace("-", "_") not in _IGNORED else key
            if _field_type(path) not in (bool, bool | None):
                raise ConfigError(f"--{key} needs a value")
            raw = "true"
        _apply(cfg, key, raw)
    return cfg


def resolve_config(preset: str | None = None, overrides: typing.Sequence[str] = (),
                   base: TrainConfig | None = None) -> TrainConfig:
    """A preset (or `base`, or the upstream defaults) with overrides applied.

    `preset`/`overrides` may also name the preset inside the overrides (--preset X / preset=X).
    """
    pairs = parse_overrides(overrides)
    rest = []
    for k, v in pairs:
        if k.lstrip("+").replace("-", "_") == "preset":
            preset = v
        else:
            rest.append(f"--{k}={v}" if v is not None else f"--{k}")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        cfg = PRESETS[preset]()
        cfg.preset = preset
    else:
        cfg = copy.deepcopy(base) if base is not None else TrainConfig()
    return apply_overrides(cfg, rest)


def config_to_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)


def config_from_dict(d: dict) -> TrainConfig:
    """Inverse of config_to_dict (unknown keys are a ConfigError)."""
    d = dict(d)
    arch = ModelConfig.from_dict(d.pop("arch", {}))
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}")
    return TrainConfig(arch=arch, **d)


def config_json(cfg: TrainConfig) -> str:
    return json.dumps(config_to_dict(cfg), indent=2, sort_keys=False)


def _resume_base(resume: str) -> TrainConfig | None:
    """The saved config of the run being resumed (run dir config.json, else checkpoint meta)."""
    p = Path(resume)
    for f in (p / "config.json", p.parent.parent / "config.json" if p.parent.name == "checkpoints" else None):
        if f is not None and f.is_file():
            return config_from_dict(json.loads(f.read_text()))
    if (p / "meta.json").is_file():
        meta = json.loads((p / "meta.json").read_text())
        if isinstance(meta.get("train_config"), dict):
            return config_from_dict(meta["train_config"])
    return None


def config_from_cli(argv: list[str]) -> TrainConfig:
    """Preset / overrides; with --resume and no preset, the resumed run's config + overrides."""
    pairs = parse_overrides(argv)
    keys = {k.lstrip("+").replace("-", "_"): v for k, v in pairs}
    base = None
    if keys.get("resume") and "preset" not in keys and os.environ.get("RANK", "0") == "0":
        base = _resume_base(keys["resume"])
        if base is not None:  # the run continues where its checkpoint lies (the dir may have moved)
            base.run_dir, base.stop_at_step = None, 0  # and stop_at_step applied to that invocation only
    return resolve_config(None, argv, base=base)
