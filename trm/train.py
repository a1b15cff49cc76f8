r"""Train a TRM: one process, or torchrun over GPUs / nodes; resumable; EMA; provenance.

    python -m trm.train --preset smoke --data_path data/demo                       # CPU toy run
    python -m trm.train --preset paper-arc2 --grad-accum-steps 8                   # one GPU
    torchrun --nproc-per-node 8 -m trm.train --preset paper-arc2 +run_name=arc2   # one node
    torchrun --nproc-per-node 8 -m trm.train arch=trm data_paths="[data/arc2concept-aug-1000]" \
        arch.L_layers=2 arch.H_cycles=3 arch.L_cycles=4 +run_name=x ema=True   # upstream's spelling
    python -m trm.train --resume runs/arc2                                         # continue a run
    # two nodes x 8 GPUs: the same line on both (the dataset at the same path on each node;
    # global rank 0 writes the run dir, and on resume reads the checkpoint and broadcasts it)
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint node0:29500 \
        --rdzv-id arc2 -m trm.train --preset paper-arc2 +run_name=arc2

In a notebook: `run_dir = train(resolve_config("smoke", ["--data_path", "data/demo"]))`.

Semantics follow upstream pretrain.py (trm-upstream.md §4-6): batches from trm.data.TrainSampler;
one step = one ACT (supervision) step on one global batch; the carry persists across batches;
loss / global_batch_size is back-propagated and gradients are SUM-all-reduced; step is
incremented before the LR; EMA of the parameters (not the puzzle table) after every step; an
eval (trm.evaluate) after every `eval_interval` epochs and a checkpoint after it.
Deliberate differences (each documented where it happens):
- training stops at exactly total_steps (upstream keeps counting no-op batches past it while
  the EMA still moves, hence its `step_723914`);
- `--grad-accum-steps k` splits each rank's slice into k micro-batches with one ACT carry per
  micro-batch slot, so 1 process x k equals k processes x 1 (the sparse table's fixed local
  batch is the micro-batch);
- checkpoints carry everything resume needs, including every slot's ACT carry and the data
  position, so a resumed run continues the exact stream; resume picks the newest *complete*
  checkpoint (checksums verified) and ignores partial ones;
- the example order inside a puzzle comes from the seeded sampler, not NumPy's global RNG;
- evals use the EMA weights in place of a deep copy of the whole train state, and the vote
  store is per eval (trm.evaluate), not aggregated over the whole run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from trm import UPSTREAM_COMMIT
from trm import distributed as D
from trm.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    load_train_state,
    save_checkpoint,
)
from trm.config import (
    PRESETS,
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_json,
    config_to_dict,
    parse_overrides,
    resolve_config,
    valid_keys,
)
from trm.data import TrainSampler, load_split
from trm.errors import EXIT_CHECKPOINT, UserError, cli_main
from trm.evaluate import evaluate_model
from trm.model import TRM, TRMWithLoss, compile_net, pick_dtype
from trm.optim import DynamicLossScale, SparseSignSGD, cosine_schedule_with_warmup_lr, make_adam_atan2
from trm.paths import runs_root
from trm.provenance import write_provenance
from trm.runlock import RunLock, check_run_dir, default_run_name
from trm.sources import resolve_checkpoint

__all__ = ["train", "main", "TrainConfig", "PRESETS", "resolve_config", "Trainer", "OutOfMemory"]


# ModelConfig fields that fix tensor shapes: a checkpoint must agree on these to be loaded.
SHAPE_FIELDS = ("hidden_size", "num_heads", "expansion", "n_layers", "puzzle_emb_ndim", "puzzle_emb_len",
                "vocab_size", "seq_len", "pos_encodings", "mlp_t")


class OutOfMemory(UserError, RuntimeError):
    """CUDA ran out of memory; the message says what to change (the kit never shrinks batches)."""

    exit_code = EXIT_CHECKPOINT


def print0(ctx: D.DistContext, *args) -> None:
    if ctx.is_main:
        print(*args, flush=True)


# ------------------------------------------------------------------------------------- helpers

def _map_tensors(obj, fn):
    """Apply fn to every tensor inside dataclasses / dicts / lists / tuples (e.g. an ACT carry)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _map_tensors(getattr(obj, f.name), fn)
                                           for f in dataclasses.fields(obj)})
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    return obj


class EMA:
    """fp32 shadows of the trainable parameters: shadow <- rate*shadow + (1-rate)*param each step."""

    def __init__(self, model: torch.nn.Module, rate: float):
        self.rate = rate
        self.shadows = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        params = dict(model.named_parameters())
        names = list(self.shadows)
        torch._foreach_lerp_([self.shadows[n] for n in names], [params[n].detach().float() for n in names],
                             1.0 - self.rate)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """Temporarily put the shadows into the model (the live puzzle table stays, as upstream)."""
        params = dict(model.named_parameters())
        backup = {n: params[n].detach().clone() for n in self.shadows}
        with torch.no_grad():
            for n, s in self.shadows.items():
                params[n].copy_(s)
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, b in backup.items():
                    params[n].copy_(b)


def _run_dir_of(ckpt: Path) -> Path | None:
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else None


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


# ------------------------------------------------------------------------------------- trainer

class Trainer:
    """Model, optimisers, EMA, carries and counters of one training run (one per process)."""

    def __init__(self, cfg: TrainConfig, ctx: D.DistContext, split):
        self.cfg, self.ctx, self.split = cfg, ctx, split
        world, accum, gbs = ctx.world_size, cfg.grad_accum_steps, cfg.global_batch_size
        if accum < 1 or gbs % (world * accum):
            raise ConfigError(f"global_batch_size {gbs} must be divisible by world size {world} x "
                              f"grad_accum_steps {accum}")
        self.micro = gbs // (world * accum)  # rows per micro-batch = the sparse table's local batch
        self.model = TRM(cfg.arch)
        self.head = TRMWithLoss(self.model)
        self.model.to(ctx.device)
        self.compiled = compile_net(self.model, cfg.compile, ctx.device)
        if cfg.freeze_weights:
            for p in self.model.parameters():
                p.requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.sparse = (SparseSignSGD(self.model, lr=0, weight_decay=cfg.puzzle_emb_weight_decay)
                       if cfg.arch.puzzle_emb_ndim > 0 else None)
        self.dense = (make_adam_atan2(self.params, lr=0, betas=(cfg.beta1, cfg.beta2),
                                      weight_decay=cfg.weight_decay) if self.params else None)
        self.ema: EMA | None = None
        # float16 forwards (T4) need loss scaling; bf16 / fp32 run exactly as upstream
        self.scaler = DynamicLossScale() if cfg.arch.forward_dtype == "float16" else None
        self.carries: list = [None] * accum  # one ACT carry per micro-batch slot of this rank
        self.step = 0
        self.position = TrainSampler.start_position(0)
        meta = split.meta
        self.total_steps = int(cfg.epochs * meta["total_groups"] * meta["mean_puzzle_examples"] / gbs)
        if self.total_steps < 1:
            raise ConfigError(f"total steps = int(epochs {cfg.epochs} x {meta['total_groups']} groups x "
                              f"{meta['mean_puzzle_examples']:.3g} examples / global batch {gbs}) = 0: "
                              "more epochs or a smaller global batch")
        self._metric_sums: dict[str, torch.Tensor] = {}
        self._metric_steps = 0

    # -- one optimizer step on one global batch
    def lrs(self, step: int) -> tuple[float, float]:
        c = self.cfg
        return (cosine_schedule_with_warmup_lr(step, c.lr, c.lr_warmup_steps, self.total_steps, c.lr_min_ratio),
                cosine_schedule_with_warmup_lr(step, c.puzzle_emb_lr, c.lr_warmup_steps, self.total_steps,
                                               c.lr_min_ratio))

    def train_step(self, gbatch) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.step += 1  # before the LR, as upstream: the first update uses base/warmup
        lr, pe_lr = self.lrs(self.step)
        self.model.train()
        pe = getattr(self.model, "puzzle_emb", None)
        ids, grads = [], []
        for j in range(cfg.grad_accum_steps):
            slot = ctx.rank * cfg.grad_accum_steps + j  # global micro-batch slot
            rows = slice(slot * self.micro, (slot + 1) * self.micro)
            batch = {k: torch.from_numpy(v).to(ctx.device, non_blocking=True)
                     for k, v in gbatch.collate(self.split, rows).items()}
            if self.carries[j] is None:
                self.carries[j] = self.head.initial_carry(batch)
            self.carries[j], loss, metrics, _, _ = self.head(self.carries[j], batch)
            if self.scaler is None:
                (loss / cfg.global_batch_size).backward()
            else:
                (loss * (self.scaler.scale / cfg.global_batch_size)).backward()
            if pe is not None and pe.local_weights is not None and pe.local_weights.grad is not None:
                ids.append(pe.local_ids.clone())  # the table's grad rows of this micro-batch
                grads.append(pe.local_weights.grad.clone())
                pe.local_weights.grad = None
            metrics["loss"] = loss.detach()
            for k, v in metrics.items():
                self._metric_sums[k] = self._metric_sums.get(k, 0) + v.detach().float()
        self._metric_steps += 1
        D.all_reduce_grads(self.params, ctx)
        sparse_rows = None
        if self.sparse is not None and ids:
            # every rank's rows, rank-major = global slot order, exactly like 1 process x accumulation
            sparse_rows = (D.all_gather_cat(torch.cat(ids), ctx), D.all_gather_cat(torch.cat(grads), ctx))
        if self.scaler is not None:
            finite = self.scaler.unscale_([p.grad for p in self.params]
                                          + ([sparse_rows[1]] if sparse_rows is not None else []))
            self.scaler.update(finite)
            if not finite:  # overflow: skip this update everywhere (same sums on every rank)
                if self.dense is not None:
                    self.dense.zero_grad(set_to_none=True)
                return
        if sparse_rows is not None:
            self.sparse.param_groups[0]["lr"] = pe_lr
            self.sparse.apply(*sparse_rows)
        if self.dense is not None:
            for g in self.dense.param_groups:
                g["lr"] = lr
            self.dense.step()
            self.dense.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)

    def fit(self, sampler: TrainSampler, after_step, after_iteration=None, n_iters: int | None = None) -> str:
        """The step loop. Runs upstream's iterations (each `sampler` pass of eval_interval epochs; the
        position carries across calls and resumes) until `after_step(iteration)` or
        `after_iteration(iteration, stopped)` returns a reason to stop, or n_iters iterations are
        done ("epochs"). n_iters None: iterations without end (the fine-tune stops itself)."""
        while n_iters is None or self.position["iteration"] < n_iters:
            it, first, stopped = self.position["iteration"], self.step, None
            for gbatch, pos in sampler.iter_iteration(self.position):
                self.train_step(gbatch)
                self.position = pos
                stopped = after_step(it)
                if stopped:
                    break
            else:
                if n_iters is None and self.step == first:  # upstream drops incomplete batches
                    raise ConfigError(f"an iteration of {self.split.num_examples} examples fills no global "
                                      f"batch of {self.cfg.global_batch_size}: lower global_batch_size")
                self.position = TrainSampler.start_position(it + 1)
            if after_iteration is not None:
                stopped = after_iteration(it, stopped)
            if stopped:
                return stopped
        return "epochs"

    def pop_metrics(self) -> dict[str, float]:
        """Metrics since the last call, summed over ranks: losses / (global batch x steps), the
        rest / count (upstream's normalisation), plus lr."""
        if not self._metric_sums:
            return {}
        keys = sorted(self._metric_sums)
        vec = D.all_reduce_sum(torch.stack([self._metric_sums[k] for k in keys]), self.ctx).tolist()
        sums = dict(zip(keys, vec))
        count = max(sums.get("count", 0.0), 1.0)
        out = {}
        for k, v in sums.items():
            if k.endswith("loss"):
                out[f"train/{k}"] = v / (self.cfg.global_batch_size * self._metric_steps)
            elif k == "count":
                out["train/count"] = v / self._metric_steps
            else:
                out[f"train/{k}"] = v / count
        out["train/lr"], out["train/puzzle_emb_lr"] = self.lrs(self.step)
        if self.scaler is not None:
            out["train/loss_scale"], out["train/skipped_steps"] = self.scaler.scale, float(self.scaler.skipped)
        self._metric_sums, self._metric_steps = {}, 0
        return out

    # -- checkpoint state
    def rank_state(self) -> dict:
        """What differs per rank: RNG streams (seed + rank) and this rank's carries, on CPU."""
        st = {"torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
              "carries": [_map_tensors(c, lambda t: t.detach().cpu()) if c is not None else None
                          for c in self.carries]}
        if self.ctx.device.type == "cuda":
            st["cuda_rng"] = torch.cuda.get_rng_state(self.ctx.device)
        return st

    def train_state(self, ranks: list[dict]) -> dict:
        return {
            "step": self.step, "loader": self.position, "total_steps": self.total_steps,
            "global_batch_size": self.cfg.global_batch_size, "world_size": self.ctx.world_size,
            "grad_accum_steps": self.cfg.grad_accum_steps,
            # model.pt holds the EMA weights when EMA is on; the raw parameters live here
            "raw_params": ({n: p.detach().cpu().clone() for n, p in self.model.named_parameters()}
                           if self.ema is not None else None),
            "optimizers": {"dense": self.dense.state_dict() if self.dense else None,
                           "sparse": self.sparse.state_dict() if self.sparse else None},
            "ema": {n: s.cpu() for n, s in self.ema.shadows.items()} if self.ema is not None else None,
            "loss_scale": self.scaler.state_dict() if self.scaler is not None else None,
            "ranks": ranks,  # per rank: rng states + carries, in rank order (= slot order)
        }

    def load_train_state(self, ts: dict) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.step = int(ts["step"])
        if ts["raw_params"] is not None:
            params = dict(self.model.named_parameters())
            with torch.no_grad():
                for n, t in ts["raw_params"].items():
                    params[n].copy_(t)
        if self.dense is not None and ts["optimizers"]["dense"] is not None:
            self.dense.load_state_dict(ts["optimizers"]["dense"])
        if self.sparse is not None and ts["optimizers"]["sparse"] is not None:
            self.sparse.load_state_dict(ts["optimizers"]["sparse"])
        if self.ema is not None and ts["ema"] is not None:
            for n, s in ts["ema"].items():
                self.ema.shadows[n].copy_(s)
        if self.scaler is not None and ts.get("loss_scale"):
            self.scaler.load_state_dict(ts["loss_scale"])
        same_batch = ts["global_batch_size"] == cfg.global_batch_size
        self.position = ts["loader"] if same_batch else TrainSampler.start_position(ts["loader"]["iteration"])
        ranks = ts["ranks"]
        slots = [c for r in ranks for c in r["carries"]]
        if same_batch and len(slots) == ctx.world_size * cfg.grad_accum_steps and all(c is not None for c in slots):
            k = cfg.grad_accum_steps
            self.carries = [_map_tensors(c, lambda t: t.to(ctx.device)) for c in slots[ctx.rank * k:(ctx.rank + 1) * k]]
        else:
            print0(ctx, "resume: global batch or micro-batch layout changed (or no carries saved): "
                        "ACT carries reset, data continue from the saved iteration's start" if not same_batch
                   else "resume: micro-batch layout changed: ACT carries reset (every row restarts)")
            self.carries = [None] * cfg.grad_accum_steps
        if len(ranks) == ctx.world_size:  # same world: each rank continues its own RNG streams
            r = ranks[ctx.rank]
            torch.set_rng_state(r["torch_rng"])
            np.random.set_state(r["numpy_rng"])
            if "cuda_rng" in r and ctx.device.type == "cuda":
                torch.cuda.set_rng_state(r["cuda_rng"], ctx.device)


def build_trainer(cfg: TrainConfig, ctx: D.DistContext, split, *, init=None, reset_puzzle_emb: str | None = None,
                  verify: bool = True, dtype_request: str | None = None) -> Trainer:
    """The engine's set-up, shared by `python -m trm.train` and the competition fine-tune.

    Dtype policy (trm.model.pick_dtype; a downgrade is announced), the architecture completed from
    the dataset (vocab, sequence length, puzzle rows), per-rank seeds (as upstream), the Trainer,
    initial weights -- `init` on rank 0: a checkpoint (kit dir or upstream file; a puzzle table of
    another size is refused unless reset_puzzle_emb="mean") or an already loaded TRM -- broadcast to
    every rank, then the EMA of those weights. cfg is not modified: the Trainer holds the resolved copy.
    """
    meta = split.meta
    requested = dtype_request or cfg.arch.forward_dtype
    dtype = str(pick_dtype(ctx.device, requested)).removeprefix("torch.")
    if requested not in ("auto", dtype):
        print0(ctx, f"NOTE: forward_dtype {requested} is not supported on {ctx.device}; using "
                    f"{dtype} (set --arch.forward_dtype to choose explicitly)")
    cfg = dataclasses.replace(cfg, arch=dataclasses.replace(
        cfg.arch, forward_dtype=dtype, vocab_size=meta["vocab_size"], seq_len=meta["seq_len"],
        num_puzzle_identifiers=meta["num_puzzle_identifiers"]))
    torch.manual_seed(cfg.seed + ctx.rank)  # as upstream: per-rank torch stream (ACT exploration)
    np.random.seed((cfg.seed + ctx.rank) % 2**32)
    trainer = Trainer(cfg, ctx, split)
    if ctx.is_main and init is not None:
        if isinstance(init, TRM):
            loaded, src = init, "the given model"
        else:
            src = init
            try:
                loaded, _ = load_checkpoint(resolve_checkpoint(str(src)), map_location="cpu", dataset_dir=cfg.data_path,
                                            reset_puzzle_emb=reset_puzzle_emb, verify=verify)
            except ValueError as e:  # e.g. a puzzle table for another dataset
                raise ConfigError(f"{src}: {e} (for load_checkpoint: --load_puzzle_emb mean)") from None
        diff = {k: (getattr(loaded.config, k), getattr(cfg.arch, k)) for k in SHAPE_FIELDS
                if getattr(loaded.config, k) != getattr(cfg.arch, k)}
        if diff:
            raise ConfigError(f"{src}: architecture differs from the config (checkpoint, config): {diff}")
        trainer.model.load_state_dict(loaded.state_dict())
        print(f"initial weights from {src}", flush=True)
    D.broadcast_module(trainer.model, ctx)
    if cfg.ema:
        trainer.ema = EMA(trainer.model, cfg.ema_rate)
    return trainer


# ------------------------------------------------------------------------------------- run

def _prepare(cfg: TrainConfig, ctx: D.DistContext) -> tuple[TrainConfig, Path, Path | None, RunLock | None]:
    """Rank 0 fixes run name/dir and the resume checkpoint and takes the run dir's lock (trm.runlock);
    every rank gets the same answer, or the same user error (no rank is left waiting)."""
    out, lock = None, None
    if ctx.is_main:
        try:
            cfg = dataclasses.replace(cfg, arch=dataclasses.replace(cfg.arch))
            resume_ckpt = find_checkpoint(cfg.resume) if cfg.resume else None
            if resume_ckpt is not None and cfg.run_dir is None and _run_dir_of(resume_ckpt) is not None:
                cfg.run_dir = str(_run_dir_of(resume_ckpt))
            if cfg.run_name is None:
                cfg.run_name = Path(cfg.run_dir).name if cfg.run_dir else default_run_name(cfg.preset)
            if cfg.run_dir is None:
                cfg.run_dir = str(runs_root() / cfg.run_name)
            lock = RunLock.acquire(cfg.run_dir)  # first: "locked by pid X" says more than "holds a run"
            try:
                check_run_dir(cfg.run_dir, resume=resume_ckpt is not None)
            except UserError:
                lock.release()
                raise
            out = (config_to_dict(cfg), str(resume_ckpt) if resume_ckpt else None)
        except (UserError, OSError) as e:
            if not ctx.distributed:
                raise
            out = e
    out = D.broadcast_object(out, ctx)
    if isinstance(out, BaseException):
        raise out
    d, ck = out
    return config_from_dict(d), Path(d["run_dir"]), Path(ck) if ck else None, lock


class _Wandb:
    """wandb when asked for and importable, else a no-op with a one-line note."""

    def __init__(self, cfg: TrainConfig, ctx: D.DistContext):
        self.run = None
        if not (cfg.wandb and ctx.is_main):
            return
        try:
            import wandb
        except ImportError:
            print("wandb: --wandb was given but the `wandb` package is not installed; "
                  "logging to metrics.jsonl only (pip install wandb to enable)")
            return
        self.run = wandb.init(project=cfg.project_name, name=cfg.run_name, config=config_to_dict(cfg),
                              dir=cfg.run_dir, resume="allow")

    def log(self, rec: dict) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in rec.items() if k != "step"}, step=rec["step"])

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def _append_jsonl(path: Path, rec: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """On resume: drop lines logged after the checkpoint's step (those steps are redone)."""
    if not path.is_file():
        return
    keep = []
    for ln in path.read_text().splitlines():
        try:
            if json.loads(ln).get("step", 0) <= step:
                keep.append(ln)
        except (json.JSONDecodeError, AttributeError):
            continue  # e.g. a line cut short by a kill
    path.write_text("".join(ln + "\n" for ln in keep))


def _plot(run_dir: Path) -> None:
    try:
        from trm.plots import plot_training_curves

        plot_training_curves(run_dir / "metrics.jsonl", run_dir / "curves.png")
    except ImportError:
        print("curves.png skipped: matplotlib is not installed")


def _oom_message(cfg: TrainConfig, ctx: D.DistContext, micro: int, step: int) -> str:
    k = cfg.grad_accum_steps
    return (f"CUDA out of memory at step {step}. Global batch {cfg.global_batch_size} = "
            f"{ctx.world_size} process(es) x {k} micro-batch(es) x {micro} rows per micro-batch "
            f"(per-rank micro-batch {micro}). The kit never lowers the batch or the precision silently. "
            f"Options: more GPUs (torchrun --nproc-per-node N, or more nodes), or "
            f"--grad-accum-steps {2 * k} (same global batch and maths, {micro // 2 or 1} rows per "
            "micro-batch); a smaller --global_batch_size changes the recipe. If it happened in an eval, "
            f"lower --eval_batch_size (now {cfg.eval_batch_size or cfg.global_batch_size}).")


def train(config: TrainConfig, argv: list[str] | None = None) -> Path:
    """Train with `config`; returns the run directory (runs/<run_name> by default)."""
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    ctx = D.setup(config.device)
    ok = False
    try:
        out = _train(config, ctx, argv)
        ok = True
        return out
    finally:
        D.teardown(ctx, clean=ok)  # after an error, no barrier: the other ranks may be stuck
        torch.set_num_threads(threads)  # in-process callers (notebooks, tests) get theirs back


def _train(config: TrainConfig, ctx: D.DistContext, argv) -> Path:
    cfg, run_dir, resume_ckpt, lock = _prepare(config, ctx)
    try:
        return _run(cfg, run_dir, resume_ckpt, ctx, argv)
    finally:
        if lock is not None:  # rank 0 only
            lock.release()


def _run(cfg: TrainConfig, run_dir: Path, resume_ckpt: Path | None, ctx: D.DistContext, argv) -> Path:
    """`python -m trm.train` in a locked run directory: the engine (build_trainer + Trainer.fit)
    and the evaluation / checkpoint / metrics hooks between iterations."""
    if cfg.epochs % cfg.eval_interval:
        raise ConfigError(f"epochs ({cfg.epochs}) must be a multiple of eval_interval ({cfg.eval_interval})")
    split = load_split(cfg.data_path, "train")
    # weights: resume > load_checkpoint > fresh init; rank 0 reads, then everything is broadcast
    init = resume_ckpt or cfg.load_checkpoint
    reset = "mean" if cfg.load_puzzle_emb == "mean" and not resume_ckpt else None
    trainer = build_trainer(cfg, ctx, split, init=init, reset_puzzle_emb=reset,
                            verify=not resume_ckpt)  # find_checkpoint verified a resume checkpoint
    cfg = trainer.cfg
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(config_json(cfg) + "\n")
        print(f"resolved config ({run_dir / 'config.json'}):\n{config_json(cfg)}", flush=True)
        write_provenance(run_dir, ctx.world_size, argv, extra={
            "grad_accum_steps": cfg.grad_accum_steps, "micro_batch": trainer.micro,
            "resume_from": str(resume_ckpt) if resume_ckpt else None})
    if resume_ckpt:
        state = load_train_state(resume_ckpt, map_location="cpu", verify=False) if ctx.is_main else None
        trainer.load_train_state(D.broadcast_object(state, ctx))
        del state
        print0(ctx, f"resuming from {resume_ckpt} at step {trainer.step}")
    sampler = TrainSampler(split, cfg.global_batch_size, cfg.eval_interval, cfg.seed)
    n_iters = cfg.epochs // cfg.eval_interval
    metrics_path = run_dir / "metrics.jsonl"
    if ctx.is_main and resume_ckpt:
        _truncate_metrics(metrics_path, trainer.step)
    eval_dir = cfg.eval_data_path or cfg.data_path
    can_eval = cfg.evaluate and (Path(eval_dir) / "test" / "dataset.json").is_file()
    if cfg.evaluate and not can_eval:
        print0(ctx, f"no test split at {eval_dir}/test: evaluation skipped")
    print0(ctx, f"world {ctx.world_size} on {ctx.device}, micro-batch {trainer.micro} x {cfg.grad_accum_steps} "
                f"accumulation, global batch {cfg.global_batch_size}; step {trainer.step}/{trainer.total_steps}, "
                f"{n_iters} iterations of {cfg.eval_interval} epochs")
    hooks = _RunHooks(trainer, run_dir, eval_dir if can_eval else None, n_iters,
                      saved_step=trainer.step if resume_ckpt else -1)
    try:
        if not hooks.finished():
            reason = trainer.fit(sampler, hooks.after_step, hooks.after_iteration, n_iters=n_iters)
            if reason == "epochs" and hooks.saved_step != trainer.step and trainer.step > 0:
                hooks.save()
    except torch.cuda.OutOfMemoryError:
        raise OutOfMemory(_oom_message(cfg, ctx, trainer.micro, trainer.step)) from None
    finally:
        hooks.close()
    note = ""
    if trainer.step < trainer.total_steps and trainer.position["iteration"] >= n_iters:
        # total_steps is upstream's estimate (epochs x groups x mean examples / batch); the sampler,
        # as upstream's, truncates the puzzle that overflows each batch and drops each iteration's
        # incomplete last batch, so with small batches all epochs end sooner (demo: 202 of 220)
        note = f"; all {cfg.epochs} epochs done, total_steps is upstream's estimate"
    print0(ctx, f"run directory: {run_dir} (step {trainer.step}/{trainer.total_steps}{note})")
    return run_dir


def progress_line(rec: dict, total_steps: int) -> str:
    """One metrics line, e.g. `step 40/566 | loss 1.2345 | accuracy (per cell) 0.612 | exact 0.000 |
    lr 5.00e-03 | s/step 1.31`; accuracies only when some sequence halted since the last line."""
    parts = [f"step {rec.get('step')}/{total_steps}"]
    if not rec.get("train/count"):
        rec = {k: v for k, v in rec.items() if "accuracy" not in k}
    for key, label, fmt in (("train/loss", "loss", ".4f"), ("train/accuracy", "accuracy (per cell)", ".3f"),
                            ("train/exact_accuracy", "exact", ".3f"), ("train/lr", "lr", ".2e"),
                            ("s_per_step", "s/step", ".2f")):
        if isinstance(rec.get(key), int | float):
            parts.append(f"{label} {rec[key]:{fmt}}")
    return " | ".join(parts)


class _RunHooks:
    """What `python -m trm.train` does around the engine's steps: metrics lines (metrics.jsonl,
    wandb, the progress bar), periodic checkpoints, and after each iteration of eval_interval
    epochs an evaluation (EMA weights) and a checkpoint."""

    def __init__(self, trainer: Trainer, run_dir: Path, eval_dir: str | None, n_iters: int, saved_step: int):
        self.t, self.cfg, self.ctx = trainer, trainer.cfg, trainer.ctx
        self.run_dir, self.eval_dir, self.n_iters, self.saved_step = run_dir, eval_dir, n_iters, saved_step
        self.metrics_path = run_dir / "metrics.jsonl"
        self.stop = self.cfg.stop_at_step or math.inf
        self.wb = _Wandb(self.cfg, self.ctx)
        self.bar = None
        if self.ctx.is_main and self.cfg.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=trainer.total_steps, initial=trainer.step, unit="step", dynamic_ncols=True,
                            desc=self.cfg.run_name)
        self.timer = [time.time(), trainer.step]  # (time, step) of the last metrics line
        self.printed = time.time()  # of the last progress line (no bar: notebooks, logs)

    def finished(self) -> bool:
        return self.t.step >= self.t.total_steps or self.t.step >= self.stop

    def log(self, rec: dict) -> None:
        if self.ctx.is_main:
            _append_jsonl(self.metrics_path, rec)
            self.wb.log(rec)

    def flush_metrics(self, it: int) -> None:
        rec = self.t.pop_metrics()
        if not rec:
            return
        now = time.time()
        rec.update(step=self.t.step, iteration=it, s_per_step=(now - self.timer[0]) / max(self.t.step - self.timer[1], 1))
        self.timer[:] = [now, self.t.step]
        self.log(rec)
        if self.bar is None and self.ctx.is_main and now - self.printed >= self.cfg.progress_seconds:
            print(progress_line(rec, self.t.total_steps), flush=True)
            self.printed = now
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{rec['train/loss']:.3f}", acc=f"{rec.get('train/accuracy', 0):.3f}",
                                 lr=f"{rec['train/lr']:.2e}", s_step=f"{rec['s_per_step']:.2f}", refresh=False)

    def save(self, eval_metrics: dict | None = None) -> None:
        t, ctx = self.t, self.ctx
        ranks = D.gather_objects(t.rank_state(), ctx)
        if ctx.is_main:
            path = self.run_dir / "checkpoints" / f"step_{t.step}"
            save_checkpoint(path, t.model, train_state=t.train_state(ranks),
                            ema_weights=t.ema.shadows if t.ema else None, dataset_dir=self.cfg.data_path,
                            meta={"step": t.step, "train_config": config_to_dict(self.cfg),
                                  "upstream_commit": UPSTREAM_COMMIT, "eval": eval_metrics})
            print(f"checkpoint {path}", flush=True)
        self.saved_step = t.step
        D.barrier(ctx)

    def evaluate(self) -> dict | None:
        if self.eval_dir is None:
            return None
        t, ctx = self.t, self.ctx
        out = self.run_dir / "eval" / f"step_{t.step}"
        with t.ema.applied(t.model) if t.ema else contextlib.nullcontext():
            m = evaluate_model(t.model, self.eval_dir, out,
                               global_batch_size=self.cfg.eval_batch_size or self.cfg.global_batch_size,
                               device=ctx.device, rank=ctx.rank, world_size=ctx.world_size, n_pictures=0,
                               step=t.step)
        self.log({"step": t.step, **{f"eval/{k}": v for k, v in m.items() if isinstance(v, int | float)}})
        if ctx.is_main:
            _plot(self.run_dir)
        return m

    def after_step(self, it: int) -> str | None:
        t, cfg = self.t, self.cfg
        if t.step % cfg.log_interval == 0 or t.step >= t.total_steps:
            self.flush_metrics(it)
        if self.bar is not None:
            self.bar.update(1)
        if self.finished():
            return "total_steps" if t.step >= t.total_steps else "stop_at_step"
        if cfg.checkpoint_every_steps and t.step % cfg.checkpoint_every_steps == 0:
            self.save()
        return None

    def after_iteration(self, it: int, stopped: str | None) -> str | None:
        """End of an iteration (or the step that stopped it): metrics, then eval and checkpoint."""
        t, cfg = self.t, self.cfg
        self.flush_metrics(it)
        done = t.step >= t.total_steps or t.position["iteration"] >= self.n_iters
        if stopped == "stop_at_step" and not done:
            if self.saved_step != t.step:
                self.save()
            print0(self.ctx, f"stopped at step {t.step} (stop_at_step); continue with --resume {self.run_dir}")
            return stopped
        m = self.evaluate() if (it >= cfg.min_eval_interval or done) else None
        if (cfg.checkpoint_every_eval or done) and self.saved_step != t.step:
            self.save(m)
        self.timer[:] = [time.time(), t.step]  # s/step excludes evals and checkpoints
        return "done" if done else stopped

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.wb.finish()


def _usage() -> str:
    return (__doc__.split("\n\n")[1] + "\n\nPresets: " + ", ".join(PRESETS) +
            "\nKeys (--key value, key=value, +key=value; upstream names accepted):\n  " + "\n  ".join(valid_keys()))


def main(argv: list[str] | None = None) -> int:
    """The CLI: exit 2 for bad options or inputs, 3 for an unusable checkpoint or CUDA OOM (trm.errors)."""
    return cli_main(_main, argv)


def _main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(_usage())
        return 0
    train(config_from_cli(argv), argv=argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
