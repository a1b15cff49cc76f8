"""The competition fine-tune worker: `python -m trm.finetune SPEC.json` (torchrun-able).

trm.ttt.run (the notebook's logic, standard library only) writes SPEC.json -- data, weights, output
folder, deadlines, the notebook's TTTParams -- and launches this module, one process per GPU. It is
a short driver over trm.engine (build_trainer + Trainer.fit): initial weights with a
mean-initialised puzzle table for the new task ids, fine-tune-time recursion overrides, and the
stops (_FinetuneHooks: max_steps, finetune_epochs, the evaluation reserve, the deadline every rank
agrees on), periodic saves (the last good weights should a worker die), and the micro-batch split
from free GPU memory (_auto_accum; memory per row calibrated on an H200, bench/gpu_ttt.py).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from trm.atomic import write_json_atomic
from trm.kaggle_input import read_json
from trm.ttt import CRASH_ENV, FAULT_ENV, _divisible
from trm.ttt_params import TTTParams

clock = time.time  # the wall clock every stop and record reads (seconds); tests put a fake clock here


def finetune(spec: dict) -> dict:
    """Fine-tune spec["weights"] on spec["data"]'s train split, then save a kit checkpoint to
    spec["out"] (with ttt_finetune.json). torchrun-compatible. A short driver over trm.train's
    engine (build_trainer + Trainer.fit: optimisers, LR schedule, EMA, ACT carries, all-reduce);
    the fine-tune adds initial weights with a mean-initialised puzzle table for the new ids,
    fine-tune-time architecture overrides, and its stop conditions (_FinetuneHooks)."""
    import torch

    from trm import distributed as D
    from trm.checkpoint import load_checkpoint
    from trm.data import TrainSampler, load_split
    from trm.engine import build_trainer
    from trm.model import compile_enabled

    p = TTTParams(**spec["params"]).resolved()
    # an explicit collective timeout: a dead or stalled worker ends the run in minutes, not hours
    ctx = D.setup(p.device, timeout_s=60 * p.rank_timeout_minutes)
    ok = False
    try:
        t0 = clock()
        split = load_split(spec["data"], "train")
        loaded, mean_init = None, None
        if ctx.is_main:  # the weights, their table mean-filled to the new ids; every rank gets the arch
            loaded, _ = load_checkpoint(spec["weights"], map_location="cpu", dataset_dir=spec["data"],
                                        reset_puzzle_emb="mean")
            table = loaded.puzzle_emb.weights
            mean_init = bool(table.shape[0] < 3 or torch.equal(table[1:], table[1:2].expand_as(table[1:])))
        arch = _arch_overrides(D.broadcast_object(loaded.config if loaded is not None else None, ctx), p)
        free = torch.cuda.mem_get_info(ctx.device)[0] if ctx.device.type == "cuda" else None
        accum = p.grad_accum_steps or _auto_accum(arch, p.global_batch_size // ctx.world_size, free,
                                                  compile_enabled(None, ctx.device))  # None: from free memory
        if ctx.distributed:  # every rank must split the same way: take the most cautious
            accum = int(D.all_reduce_max(torch.tensor([accum], device=ctx.device), ctx).item())
        gbs = _divisible(p.global_batch_size, ctx.world_size * accum)
        cfg = finetune_config(p, arch, spec["data"], gbs, accum)
        trainer = build_trainer(cfg, ctx, split, init=loaded, dtype_request=p.dtype)
        del loaded
        if ctx.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(ctx.device)
        hooks = _FinetuneHooks(trainer, spec, p, t0=t0, free_bytes=free, mean_init=mean_init)
        if ctx.is_main:
            print(f"fine-tune: {split.num_groups} tasks, {split.num_examples} demo examples, "
                  f"{split.meta['num_puzzle_identifiers']} puzzle ids; "
                  f"world {ctx.world_size} on {ctx.device} "
                  f"({trainer.cfg.arch.forward_dtype}), H {arch.n_outer_cycles} L {arch.n_latent_steps} "
                  f"halt_max_steps {arch.halt_max_steps}; global batch {gbs} ({trainer.micro} rows x {accum} "
                  f"micro-batches per process), {'embeddings only' if p.freeze_weights else 'full model'}",
                  flush=True)
        stopped_by = trainer.fit(TrainSampler(split, gbs, cfg.eval_interval, cfg.seed), hooks.after_step)
        if ctx.is_main:
            hooks.save(stopped_by)
            print(f"fine-tune done: {trainer.step} steps in {clock() - hooks.t_loop:.1f} s "
                  f"({stopped_by}); "
                  f"saved {spec['out']}", flush=True)
        D.barrier(ctx)
        ok = True
        return {"steps": trainer.step}
    finally:
        D.teardown(ctx, clean=ok)  # after an error no barrier: a dead peer would hold it forever


def finetune_config(p: TTTParams, arch, data: str, global_batch: int, accum: int):
    """The fine-tune's TrainConfig: every notebook parameter that names a TrainConfig field is that
    field (lr, puzzle_emb_lr, lr_warmup_steps, weight_decay, ema, seed, ...: one meaning, passed
    through by name, tests/test_ttt.py checks it), the batch split as computed, and what a fine-tune
    always is: no evaluation during training, a constant LR after warm-up (so a length known only when
    the clock stops it changes no step's LR), `finetune_epochs` epochs in one sampler iteration, or up
    to `max_epochs` when the clock decides the length, in iterations of SAMPLER_EPOCHS (the epochs set
    total_steps, hence the epochs stop)."""
    from trm.config import TrainConfig

    epochs = p.epoch_limit
    # the sampler's iteration (its draws of group order and versions): the written epochs, else blocks
    # of SAMPLER_EPOCHS, so a clock-fitted run's batches do not depend on its cap
    per_iter = p.finetune_epochs or min(epochs, SAMPLER_EPOCHS)
    fixed = {"arch": arch, "data_path": data, "global_batch_size": global_batch, "grad_accum_steps": accum,
             "epochs": epochs, "eval_interval": per_iter, "evaluate": False, "lr_min_ratio": 1.0,
             "progress": False}
    shared = ({f.name for f in dataclasses.fields(TrainConfig)}
              & {f.name for f in dataclasses.fields(TTTParams)})
    return TrainConfig(**fixed, **{k: getattr(p, k) for k in sorted(shared - set(fixed))})


def _arch_overrides(arch, p: TTTParams):
    """The pretrained architecture with the fine-tune's recursion overrides (None = as pretrained):
    NVARC fine-tuned an H 3 model at H 4 / L 4 / halt_max_steps 10. Shapes never change."""
    changes = {k: v for k, v in (("n_outer_cycles", p.n_outer_cycles), ("n_latent_steps", p.n_latent_steps),
                                 ("halt_max_steps", p.halt_max_steps)) if v is not None}
    return dataclasses.replace(arch, **changes)


class _FinetuneHooks:
    """The fine-tune's stop conditions and records, called by Trainer.fit after every step: test
    hooks, periodic saves (the last good weights), progress lines, and the stops -- max_steps,
    finetune_epochs, the evaluation reserve and the deadline (agreed by every rank)."""

    def __init__(self, trainer, spec: dict, p: TTTParams, t0: float, free_bytes: int | None,
                 mean_init: bool | None):
        self.t, self.spec, self.p, self.t0, self.free = trainer, spec, p, t0, free_bytes
        self.mean_init = mean_init  # rank 0: every new row started as the mean row
        self.ctx = trainer.ctx
        self.deadline = float(spec["deadline"])
        self.final = float(spec.get("final_deadline", self.deadline))
        self.eval_rows = int(spec.get("eval_rows", 0))
        self.crash_after = int(os.environ.get(CRASH_ENV) or p.crash_after_steps or 0)
        self.fault = _fault_hook()
        self.slow_s = float(os.environ.get(SLOW_ENV) or 0)  # test hook: seconds added to every step
        self.losses: list[float] = []
        self.t_loop = self.last_save = clock()
        self.t_warm = None  # time after WARM_STEPS steps: compilation and allocator warm-up excluded

    def after_step(self, it: int) -> str | None:
        t, p, ctx = self.t, self.p, self.ctx
        if self.slow_s:
            time.sleep(self.slow_s)  # a slower GPU, as the notebook's clock sees it
        now = clock()
        if t.step == WARM_STEPS:
            self.t_warm = now
        if self.crash_after and t.step >= self.crash_after:
            raise RuntimeError(f"injected crash after {t.step} fine-tune steps ({CRASH_ENV})")
        if self.fault and self.fault[1] == ctx.rank and t.step >= self.fault[2]:
            _inject_fault(self.fault[0], ctx.rank, t.step)
        if ctx.is_main and now - self.last_save >= 60 * p.save_every_minutes:
            self.save(f"periodic save at step {t.step}")  # the last good weights, should a worker die
            self.last_save = clock()
        if t.step % p.log_interval == 0:
            self.progress()
        reason = stop_reason(p, t.step, t.total_steps, t.cfg.arch, t.cfg.global_batch_size, now, self.t_loop,
                             self.deadline, self.final, self.eval_rows)
        return reason if _all_agree(reason is not None, ctx) else None

    def progress(self) -> None:
        m = self.t.pop_metrics()
        self.losses.append(round(m.get("train/loss", float("nan")), 5))
        if self.ctx.is_main:
            print(f"step {self.t.step}: loss {m.get('train/loss', 0):.4f} "
                  f"acc {m.get('train/accuracy', 0):.3f} "
                  f"exact {m.get('train/exact_accuracy', 0):.3f} lr {m.get('train/lr', 0):.2e}; "
                  f"{(clock() - self.t_loop) / self.t.step:.3f} s/step, "
                  f"{(self.deadline - clock()) / 60:.1f} min left", flush=True)

    def save(self, stopped: str) -> None:
        """Rank 0: the weights (atomically), then ttt_finetune.json beside them."""
        import torch

        from trm.checkpoint import save_checkpoint

        t, ctx, now = self.t, self.ctx, clock()
        arch, gbs, meta = t.cfg.arch, t.cfg.global_batch_size, t.split.meta
        steady = (now - self.t_warm) / (t.step - WARM_STEPS) if self.t_warm and t.step > WARM_STEPS else None
        peak = torch.cuda.max_memory_allocated(ctx.device) if ctx.device.type == "cuda" else None
        save_checkpoint(self.spec["out"], t.model, ema_weights=t.ema.shadows if t.ema else None,
                        dataset_dir=self.spec["data"], meta={"step": t.step, "ttt": self.spec})
        result = {"steps": t.step, "seconds": round(now - self.t_loop, 1), "stopped_by": stopped,
                  "stop_kind": stopped.split(":")[0] if stopped.split(":")[0] in STOP_KINDS else None,
                  # trm.engine's epoch: every task's demo pairs once (total_steps' formula)
                  "epochs_done": round(t.step * gbs / meta["total_groups"] / meta["mean_puzzle_examples"], 2),
                  "s_per_step": round((now - self.t_loop) / max(t.step, 1), 4), "world_size": ctx.world_size,
                  "global_batch_size": gbs, "dtype": arch.forward_dtype,
                  "arch": {k: getattr(arch, k)
                           for k in ("n_outer_cycles", "n_latent_steps", "halt_max_steps")},
                  "num_puzzle_identifiers": meta["num_puzzle_identifiers"], "mean_init": self.mean_init,
                  "losses": self.losses, "last_loss": self.losses[-1] if self.losses else None,
                  "setup_seconds": round(self.t_loop - self.t0, 1), "total_steps": t.total_steps,
                  "steady_s_per_step": round(steady, 4) if steady else None,
                  "rows_per_s": round(gbs / steady, 1) if steady else None,
                  "grad_accum_steps": t.cfg.grad_accum_steps, "micro_batch": t.micro, "compiled": t.compiled,
                  "free_mem_gib_at_start": round(self.free / 2**30, 2) if self.free is not None else None,
                  "peak_mem_gib": round(peak / 2**30, 2) if peak is not None else None,
                  "predicted_peak_mem_gib": round(predicted_peak_bytes(arch, t.micro, t.compiled) / 2**30, 2),
                  "skipped_steps": t.scaler.skipped if t.scaler else 0}
        write_json_atomic(Path(self.spec["out"]) / "ttt_finetune.json", result, indent=2)


# A clock-fitted fine-tune draws its data order in blocks of this many epochs (NVARC's competition run;
# the kit's earlier fixed length), whatever its max_epochs: raising the cap changes no early batch.
SAMPLER_EPOCHS = 2000
STOP_KINDS = ("steps", "epochs", "cap", "clock")  # a stop reason's first word: ttt_finetune.json "stop_kind"


def stop_reason(p: TTTParams, step: int, total_steps: int, arch, global_batch: int, now: float, t_loop: float,
                deadline: float, final: float, eval_rows: int) -> str | None:
    """Why the fine-tune stops after `step` (None: it goes on), from the clock alone (times in seconds
    on one clock; the loop started at t_loop). In order: max_steps ("steps"); the epochs, written
    ("epochs") or the max_epochs cap of a clock-fitted length ("cap"); and the clock ("clock"): the
    fine-tune's share (`deadline`), or the evaluation's reserve before the `final` deadline, predicted
    from the fine-tune's own seconds per row (eval_reserve_s; from step WARM_STEPS on)."""
    if p.max_steps is not None and step >= p.max_steps:
        return f"steps: max_steps = {p.max_steps}"
    if step >= total_steps:
        return (f"epochs: finetune_epochs = {p.finetune_epochs}" if p.finetune_epochs is not None
                else f"cap: max_epochs = {p.max_epochs}")
    if now >= deadline:
        return "clock: the fine-tune's share of the budget"
    if step >= WARM_STEPS and eval_rows:
        s_per_row = (now - t_loop) / (step * global_batch)
        if now >= final - eval_reserve_s(eval_rows, arch, s_per_row):
            eval_s = eval_rows * eval_train_rows(arch) * s_per_row
            return f"clock: the evaluation's reserve (evaluation predicted at {eval_s / 60:.1f} min)"
    return None


# ---- the evaluation's reserve: the fine-tune stops early enough for the evaluation that follows.
# An evaluation row runs halt_max_steps ACT steps forward: H(L+1) net applications each, against a
# training row's H(L+1) forward + (L+1) back-propagated (2x) = (H+2)(L+1): halt_max_steps x H/(H+2)
# training rows of FLOPs (9.6 at the paper config). Measured, an evaluation row's FLOPs run slower
# than a training row's: the H200 rates of the notebook's evaluation, an eager one and the fine-tune
# (docs/performance.md, "The evaluation reserve had to be calibrated") put the time at a multiple of
# the FLOP ratio. Predicting with the FLOP ratio alone left a long evaluation (T4x2: hours) short of
# its reserve.
# The reserve's factor: the evaluation runs in rounds (trm.anytime), so one slower than predicted loses
# its last rounds' votes, never the run; the prediction already takes the slower end of the measured
# ratios (EVAL_SLOWDOWN), and 1.25 covers a GPU whose ratio is a quarter worse than that. Every second
# of reserve beyond the evaluation is a second not fine-tuned (docs/performance.md: the projection).
EVAL_SLOWDOWN = 2.3  # measured evaluation time / FLOP-predicted time (the upper of the measured ratios)
EVAL_RESERVE_FACTOR = 1.25  # the reserve: this many predicted evaluations ...
EVAL_START_S = 300.0  # ... plus this: the evaluation's process start, loading and compilation


def eval_train_rows(arch) -> float:
    """Training rows whose time one evaluation row takes (see EVAL_SLOWDOWN)."""
    return arch.halt_max_steps * arch.n_outer_cycles / (arch.n_outer_cycles + 2) * EVAL_SLOWDOWN


def eval_reserve_s(eval_rows: int, arch, train_s_per_row: float) -> float:
    """Seconds the fine-tune leaves before the final deadline for an evaluation of `eval_rows`
    rows, from its own measured seconds per training row (all processes together)."""
    return EVAL_RESERVE_FACTOR * eval_rows * eval_train_rows(arch) * train_s_per_row + EVAL_START_S


# Activation bytes kept per (token x hidden unit x block application) of a training step: the
# measured peak (H200, bf16, paper config, micro-batch 192, compiled and eager: the GPU table of
# docs/performance.md) less FIXED_BYTES, divided by the units, plus ~10 %.
ACT_BYTES_PER_UNIT = {True: 42, False: 53}  # compiled net: True
FIXED_BYTES = 2 * 2**30  # weights, optimiser state, puzzle table, CUDA context slack
WARM_STEPS = 5  # fine-tune steps left out of the steady-state speed (compilation, allocator)


def row_bytes(arch, compiled: bool = True) -> int:
    """Predicted training memory per micro-batch row. A training step keeps activations for the
    last outer cycle: n_layers x (n_latent_steps + 1) block applications over prefix + seq tokens;
    ACT_BYTES_PER_UNIT is calibrated on a GPU (bench/gpu_ttt.py compares it with the measured peak)."""
    return (arch.prefix_len + arch.seq_len) * arch.hidden_size * arch.n_layers * (arch.n_latent_steps + 1) \
        * ACT_BYTES_PER_UNIT[compiled]


def predicted_peak_bytes(arch, micro_batch: int, compiled: bool = True) -> int:
    return FIXED_BYTES + micro_batch * row_bytes(arch, compiled)


def _auto_accum(arch, local_batch: int, free_bytes: int | None, compiled: bool = True) -> int:
    """Fewest micro-batches (a divisor split of local_batch) whose rows fit in `free_bytes` of
    GPU memory (torch.cuda.mem_get_info()[0]); None (not CUDA): 1."""
    if free_bytes is None:
        return 1
    fit = max(1, int((free_bytes - FIXED_BYTES) // row_bytes(arch, compiled)))
    return next(local_batch // m for m in range(local_batch, 0, -1) if local_batch % m == 0 and m <= fit)


SLOW_ENV = "TRM_TTT_SLOW_STEP_S"  # test hook: sleep this many seconds after every fine-tune step


def _fault_hook() -> tuple[str, int, int] | None:
    """$TRM_TTT_FAULT = "kill:RANK:STEP" | "stall:RANK:STEP" (tests of a dying / hanging worker)."""
    raw = os.environ.get(FAULT_ENV)
    if not raw:
        return None
    kind, rank, step = raw.split(":")
    if kind not in ("kill", "stall"):
        raise ValueError(f"{FAULT_ENV}={raw!r}: want kill:RANK:STEP or stall:RANK:STEP")
    return kind, int(rank), int(step)


def _inject_fault(kind: str, rank: int, step: int) -> None:
    print(f"[rank {rank}] injected fault: {kind} at step {step} ({FAULT_ENV})", flush=True)
    if kind == "kill":
        os._exit(17)  # no cleanup, no exception: as a worker killed by the OOM killer
    while True:  # stall: alive but never reaching the next collective
        time.sleep(3600)


def _all_agree(flag: bool, ctx) -> bool:
    """True on every rank when any rank says True (ranks' clocks may straddle the deadline)."""
    if not ctx.distributed:
        return flag
    import torch

    from trm import distributed as D

    return bool(D.all_reduce_sum(torch.tensor([float(flag)], device=ctx.device), ctx).item() > 0)


def main(argv: list[str] | None = None) -> int:
    from trm.errors import UserError, cli_main  # one convention for every entry point (docs/reliability.md)

    def run(args: list[str]) -> int:
        if len(args) != 1:
            raise UserError("usage: python -m trm.finetune SPEC.json   (written by trm.ttt.run)")
        spec = Path(args[0])
        if not spec.is_file():
            raise UserError(f"{spec}: no such fine-tune spec (trm.ttt.run writes it)")
        finetune(read_json(spec))
        return 0

    return cli_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
