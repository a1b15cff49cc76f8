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

The engine (one step, the loop, EMA, set-up) is trm.engine, shared with the competition
fine-tune; this module is its driver: run directory, evals after every `eval_interval` epochs
and a checkpoint after each, metrics, resume, the CLI.
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
import math
import sys
import time
from pathlib import Path

import torch

from trm import UPSTREAM_COMMIT
from trm import distributed as D
from trm.checkpoint import (
    find_checkpoint,
    load_train_state,
    save_checkpoint,
)
from trm.config import (
    PRESETS,
    ConfigError,
    TrainConfig,
    config_from_cli,
    config_from_dict,
    config_json,
    config_to_dict,
    valid_keys,
)
from trm.data import TrainSampler, load_split
from trm.engine import OutOfMemory, Trainer, build_trainer, oom_message, print0
from trm.errors import UserError, cli_main
from trm.evaluate import evaluate_model
from trm.provenance import write_provenance
from trm.runlock import RunLock, check_run_dir, place_run
from trm.runlog import Wandb, append_jsonl, plot, progress_line, truncate_metrics

__all__ = ["train", "main"]


# ------------------------------------------------------------------------------------- run

def _prepare(cfg: TrainConfig, ctx: D.DistContext) -> tuple[TrainConfig, Path, Path | None, RunLock | None]:
    """Rank 0 fixes run name/dir and the resume checkpoint and takes the run dir's lock (trm.runlock);
    every rank gets the same answer, or the same user error (no rank is left waiting)."""
    out, lock = None, None
    if ctx.is_main:
        try:
            cfg = dataclasses.replace(cfg, arch=dataclasses.replace(cfg.arch))
            resume_ckpt = find_checkpoint(cfg.resume) if cfg.resume else None
            place_run(cfg)
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
        truncate_metrics(metrics_path, trainer.step)
    eval_dir = cfg.eval_data_path or cfg.data_path
    can_eval = cfg.evaluate and (Path(eval_dir) / "test" / "dataset.json").is_file()
    if cfg.evaluate and not can_eval:
        print0(ctx, f"no test split at {eval_dir}/test: evaluation skipped")
    print0(ctx, f"world {ctx.world_size} on {ctx.device}, "
                f"micro-batch {trainer.micro} x {cfg.grad_accum_steps} "
                f"accumulation, global batch {cfg.global_batch_size}; "
                f"step {trainer.step}/{trainer.total_steps}, "
                f"{n_iters} iterations of {cfg.eval_interval} epochs")
    hooks = _RunHooks(trainer, run_dir, eval_dir if can_eval else None, n_iters,
                      saved_step=trainer.step if resume_ckpt else -1)
    try:
        if not hooks.finished():
            reason = trainer.fit(sampler, hooks.after_step, hooks.after_iteration, n_iters=n_iters)
            if reason == "epochs" and hooks.saved_step != trainer.step and trainer.step > 0:
                hooks.save()
    except torch.cuda.OutOfMemoryError:
        raise OutOfMemory(oom_message(cfg, ctx, trainer.micro, trainer.step)) from None
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


class _RunHooks:
    """What `python -m trm.train` does around the engine's steps: metrics lines (metrics.jsonl,
    wandb, the progress bar), periodic checkpoints, and after each iteration of eval_interval
    epochs an evaluation (EMA weights) and a checkpoint."""

    def __init__(self, trainer: Trainer, run_dir: Path, eval_dir: str | None, n_iters: int, saved_step: int):
        self.t, self.cfg, self.ctx = trainer, trainer.cfg, trainer.ctx
        self.run_dir, self.eval_dir, self.n_iters, self.saved_step = run_dir, eval_dir, n_iters, saved_step
        self.metrics_path = run_dir / "metrics.jsonl"
        self.stop = self.cfg.stop_at_step or math.inf
        self.wb = Wandb(self.cfg, self.ctx)
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
            append_jsonl(self.metrics_path, rec)
            self.wb.log(rec)

    def flush_metrics(self, it: int) -> None:
        rec = self.t.pop_metrics()
        if not rec:
            return
        now = time.time()
        rec.update(step=self.t.step, iteration=it,
                   s_per_step=(now - self.timer[0]) / max(self.t.step - self.timer[1], 1))
        self.timer[:] = [now, self.t.step]
        self.log(rec)
        if self.bar is None and self.ctx.is_main and now - self.printed >= self.cfg.progress_seconds:
            print(progress_line(rec, self.t.total_steps), flush=True)
            self.printed = now
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{rec['train/loss']:.3f}", acc=f"{rec.get('train/accuracy', 0):.3f}",
                                 lr=f"{rec['train/lr']:.2e}", s_step=f"{rec['s_per_step']:.2f}",
                                 refresh=False)

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
            plot(self.run_dir)
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
            print0(self.ctx, f"stopped at step {t.step} (stop_at_step); "
                             f"continue with --resume {self.run_dir}")
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
            "\nKeys (--key value, key=value, +key=value; upstream names accepted):\n  " +
            "\n  ".join(valid_keys()))


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
