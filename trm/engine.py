"""The training engine: one Trainer for `python -m trm.train` and the competition fine-tune
(trm.finetune). build_trainer sets a run up (dtype policy, the architecture completed from the
dataset, seeds, initial weights, broadcast, EMA); Trainer.train_step is one optimizer step on one
global batch; Trainer.fit is the step loop, its stops left to the caller's hooks.

Semantics follow upstream pretrain.py (docs/fidelity.md#training-loop): batches from trm.data.TrainSampler;
one step = one ACT (supervision) step on one global batch; the carry persists across batches;
loss / global_batch_size is back-propagated and gradients are SUM-all-reduced; step is
incremented before the LR; EMA of the parameters (not the puzzle table) after every step.
float16 forwards (T4) add dynamic loss scaling (trm.optim.DynamicLossScale); bf16 / fp32 run as upstream.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import torch

from trm import distributed as D
from trm.checkpoint import PuzzleTableMismatch, load_checkpoint
from trm.config import ConfigError, TrainConfig
from trm.data import TrainSampler
from trm.errors import EXIT_CHECKPOINT, UserError
from trm.model import TRM, CompiledStep, TRMWithLoss, compile_enabled, compile_net, pick_dtype
from trm.optim import (
    OPTIMIZERS,
    DynamicLossScale,
    SparseSignSGD,
    cosine_schedule_with_warmup_lr,
    make_adam_atan2,
    make_muon,
    muon_params,
)
from trm.sources import resolve_checkpoint

# ModelConfig fields that fix tensor shapes: a checkpoint must agree on these to be loaded.
SHAPE_FIELDS = ("hidden_size", "num_heads", "expansion", "n_layers", "puzzle_emb_ndim", "puzzle_emb_len",
                "vocab_size", "seq_len", "pos_encodings", "mlp_t")


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
        if not names:  # freeze_weights: only the puzzle table (a buffer) trains, nothing to average
            return
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
        if cfg.freeze_weights:
            for p in self.model.parameters():
                p.requires_grad_(False)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # the ACT step: eager, with the net compiled (the default on CUDA), or compiled whole (graphed)
        self.step_fn = self.head
        self.graphed = compile_enabled(cfg.compile, ctx.device) and cfg.compile_step
        if self.graphed:
            self.step_fn = CompiledStep(self.head)
            for p in self.params:  # .grad outside the graphs' memory, zeroed in place (CompiledStep)
                p.grad = torch.zeros_like(p)
            self.compiled = True
        else:
            self.compiled = compile_net(self.model, cfg.compile, ctx.device)
        self.sparse = (SparseSignSGD(self.model, lr=0, weight_decay=cfg.puzzle_emb_weight_decay)
                       if cfg.arch.puzzle_emb_ndim > 0 else None)
        if cfg.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer {cfg.optimizer!r}: not one of {', '.join(OPTIMIZERS)}")
        # --optimizer muon: Muon on the blocks' matrices, AdamATan2 (`dense`) on the other weights
        on_muon = muon_params(self.model) if cfg.optimizer == "muon" else []
        self.muon = (make_muon(on_muon, lr=0, momentum=cfg.muon_momentum, weight_decay=cfg.muon_weight_decay)
                     if on_muon else None)
        rest = [p for p in self.params if all(p is not q for q in on_muon)]
        self.dense = (make_adam_atan2(rest, lr=0, betas=(cfg.beta1, cfg.beta2),
                                      weight_decay=cfg.weight_decay) if rest else None)
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
        """(weights' LR, puzzle table's LR) at update `step`."""
        return self._lr(step, self.cfg.lr), self._lr(step, self.cfg.puzzle_emb_lr)

    def muon_lr(self, step: int) -> float:
        c = self.cfg
        return self._lr(step, c.lr if c.muon_lr is None else c.muon_lr)

    def _lr(self, step: int, base: float) -> float:
        c = self.cfg
        return cosine_schedule_with_warmup_lr(step, base, c.lr_warmup_steps, self.total_steps, c.lr_min_ratio)

    def _dense_opts(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.dense, self.muon) if o is not None]

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
            carry, loss, metrics, _, _ = self.step_fn(self.carries[j], batch)
            if self.graphed and cfg.grad_accum_steps > 1:  # the static carry is the next slot's input
                carry = _map_tensors(carry, lambda t: t.clone())
            self.carries[j] = carry
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
                for opt in self._dense_opts():
                    opt.zero_grad(set_to_none=not self.graphed)
                return
        if sparse_rows is not None:
            self.sparse.param_groups[0]["lr"] = pe_lr
            self.sparse.apply(*sparse_rows)
        if self.muon is not None:
            for g in self.muon.param_groups:
                g["lr"] = self.muon_lr(self.step)
            self.muon.step()
        if self.dense is not None:
            for g in self.dense.param_groups:
                g["lr"] = lr
            self.dense.step()
        for opt in self._dense_opts():  # after both steps: Muon and AdamATan2 share no parameter
            opt.zero_grad(set_to_none=not self.graphed)
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
        if self.muon is not None:
            out["train/muon_lr"] = self.muon_lr(self.step)
        if self.scaler is not None:
            out["train/loss_scale"], out["train/skipped_steps"] = (self.scaler.scale,
                                                                   float(self.scaler.skipped))
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
            "optimizer": self.cfg.optimizer,
            "optimizers": {"dense": self.dense.state_dict() if self.dense else None,
                           "sparse": self.sparse.state_dict() if self.sparse else None,
                           "muon": self.muon.state_dict() if self.muon else None},
            "ema": {n: s.cpu() for n, s in self.ema.shadows.items()} if self.ema is not None else None,
            "loss_scale": self.scaler.state_dict() if self.scaler is not None else None,
            "ranks": ranks,  # per rank: rng states + carries, in rank order (= slot order)
        }

    def load_train_state(self, ts: dict) -> None:
        cfg, ctx = self.cfg, self.ctx
        saved = ts.get("optimizer", "adam_atan2")  # checkpoints from before the option: upstream's
        if saved != cfg.optimizer:  # the dense state covers other parameters: it cannot carry over
            raise ConfigError(f"the checkpoint was trained with --optimizer {saved}, this run has "
                              f"--optimizer {cfg.optimizer}: resume with --optimizer {saved}, or start a "
                              "new run from its weights with +load_checkpoint=<checkpoint>")
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
        if self.muon is not None and ts["optimizers"].get("muon") is not None:
            self.muon.load_state_dict(ts["optimizers"]["muon"])
        if self.ema is not None and ts["ema"] is not None:
            for n, s in ts["ema"].items():
                self.ema.shadows[n].copy_(s)
        if self.scaler is not None and ts.get("loss_scale"):
            self.scaler.load_state_dict(ts["loss_scale"])
        same_batch = ts["global_batch_size"] == cfg.global_batch_size
        self.position = ts["loader"] if same_batch else TrainSampler.start_position(ts["loader"]["iteration"])
        ranks = ts["ranks"]
        slots = [c for r in ranks for c in r["carries"]]
        if (same_batch and len(slots) == ctx.world_size * cfg.grad_accum_steps
                and all(c is not None for c in slots)):
            k = cfg.grad_accum_steps
            self.carries = [_map_tensors(c, lambda t: t.to(ctx.device))
                            for c in slots[ctx.rank * k:(ctx.rank + 1) * k]]
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


def build_trainer(cfg: TrainConfig, ctx: D.DistContext, split, *, init=None,
                  reset_puzzle_emb: str | None = None,
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
                loaded, _ = load_checkpoint(resolve_checkpoint(str(src)), map_location="cpu",
                                            dataset_dir=cfg.data_path,
                                            reset_puzzle_emb=reset_puzzle_emb, verify=verify)
            except PuzzleTableMismatch as e:  # only this one has the option as its fix
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


class OutOfMemory(UserError, RuntimeError):
    """CUDA ran out of memory; the message says what to change (the kit never shrinks batches)."""

    exit_code = EXIT_CHECKPOINT


def oom_message(cfg: TrainConfig, ctx: D.DistContext, micro: int, step: int) -> str:
    k = cfg.grad_accum_steps
    return (f"CUDA out of memory at step {step}. Global batch {cfg.global_batch_size} = "
            f"{ctx.world_size} process(es) x {k} micro-batch(es) x {micro} rows per micro-batch "
            f"(per-rank micro-batch {micro}). The kit never lowers the batch or the precision silently. "
            f"Options: more GPUs (torchrun --nproc-per-node N, or more nodes), or "
            f"--grad-accum-steps {2 * k} (same global batch and maths, {micro // 2 or 1} rows per "
            "micro-batch); a smaller --global_batch_size changes the recipe. If it happened in an eval, "
            f"lower --eval_batch_size (now {cfg.eval_batch_size or cfg.global_batch_size}).")
