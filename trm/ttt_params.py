"""The competition notebook's parameters, each declared once: its `parameters` cell sets these names.

Two rules (docs/kaggle.md, "The notebook"):
- **None means "not written".** A fine-tune setting that a named `settings` may choose (FINETUNE) is
  None until resolve() fills it: from SETTINGS[settings], else from SETTINGS["default"], the one
  place those defaults are written. What the user wrote always wins, equal to a default or not
  (`settings = "smoke"` with `lr = 1e-4` runs at 1e-4).
- **No number stands for another.** "As pretrained", "every GPU", "no cap", "auto" are None, never 0;
  a 0 or a negative count is refused with the spelling to use.

Standard library only: the notebook reads this before any wheel is installed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# Named fine-tune settings (docs/kaggle.md, "From a published checkpoint": which with which
# checkpoint, and why). "default" lists every FINETUNE parameter; the others what they change.
SETTINGS: dict[str, dict] = {
    # the paper-size model as pretrained (its recursion: None = as pretrained), NVARC's learning rates,
    # augmentations and best epoch count as the cap (the length itself comes from the clock:
    # finetune_epochs = None), Trelis's global batch on 4xL4
    "default": {"num_aug": 128, "global_batch_size": 384, "lr": 1e-4, "puzzle_emb_lr": 1e-2,
                "lr_warmup_steps": 200, "ema_rate": 0.999, "max_epochs": 4000, "eval_batch_size": 768,
                "halt_max_steps": None, "n_outer_cycles": None, "n_latent_steps": None},
    # NVARC's fine-tune of its own checkpoint (1st place, ARC Prize 2025): its best published run,
    # 4000 epochs (public LB 10.0, against 7.5 at 2000), as the cap of a clock-fitted length
    "nvarc": {"n_outer_cycles": 4, "n_latent_steps": 4, "halt_max_steps": 10, "max_epochs": 4000,
              "global_batch_size": 128, "lr": 1e-4, "lr_warmup_steps": 200, "num_aug": 128},
    # the toy `smoke` model (trm.config) at its own pretraining rates, as "default" follows the paper
    # model's; CPU-sized batch and warm-up (set max_steps)
    "smoke": {"lr": 5e-3, "puzzle_emb_lr": 0.1, "ema_rate": 0.99, "global_batch_size": 16,
              "lr_warmup_steps": 20, "num_aug": 8, "eval_batch_size": 64},
}
FINETUNE = tuple(SETTINGS["default"])
SET = "the named settings' value"
# Counts and durations that must be positive when given (None = the meaning in the field's comment).
POSITIVE = ("check_tasks", "num_aug", "global_batch_size", "grad_accum_steps", "lr_warmup_steps", "max_steps",
            "finetune_epochs", "max_epochs", "max_finetune_minutes", "halt_max_steps", "n_outer_cycles",
            "n_latent_steps",
            "eval_batch_size", "validate_tasks", "n_gpus", "cpu_workers", "check_minutes", "budget_hours",
            "rank_timeout_minutes", "log_interval", "crash_after_steps")
# Not in the notebook's parameters cell: plumbing that tests and benchmarks inject (papermill -p).
HOOKS = ("cpu_workers", "crash_after_steps", "eval_kill_after_rounds", "install_wheels", "scratch_dir")


def none_means(meaning: str, default=None):
    """A field whose None has a meaning of its own (kept in the field's metadata for the errors)."""
    return field(default=default, metadata={"none": meaning})


@dataclass(frozen=True)
class TTTParams:
    """Everything the competition notebook takes. The defaults are the Kaggle run's."""

    settings: str = "default"  # named fine-tune settings (SETTINGS): default | nvarc | smoke
    mode: str = "auto"  # auto | submit | validate (hidden test tasks are always submitted)
    budget_hours: float = 12.0  # the rerun's budget: Kaggle's limit, counted from the first cell
    safety_minutes: float = 30.0  # before the first cell: container and kernel boot; after: final writes
    # the public placeholder (the commit run) gets a short check of this many minutes
    check_minutes: float | None = none_means("the full budget", default=20.0)
    check_tasks: int = 8  # the short check's tasks (same code path, fewer tasks)
    eval_share: float = 0.05  # minimum share of the time left (after the build) kept for evaluation
    # --- FINETUNE: None until resolved() fills it from SETTINGS
    num_aug: int | None = none_means(SET)  # augmented versions per task
    global_batch_size: int | None = none_means(SET)  # rows per optimizer step, over every GPU
    lr: float | None = none_means(SET)
    puzzle_emb_lr: float | None = none_means(SET)
    lr_warmup_steps: int | None = none_means(SET)
    ema_rate: float | None = none_means(SET)
    max_epochs: int | None = none_means(SET)  # the cap on a clock-fitted fine-tune (finetune_epochs None)
    eval_batch_size: int | None = none_means(SET)  # evaluation rows per batch, over every GPU
    halt_max_steps: int | None = none_means(SET + ", else as pretrained")  # ACT steps at fine-tune time
    n_outer_cycles: int | None = none_means(SET + ", else as pretrained")  # H_cycles at fine-tune time
    n_latent_steps: int | None = none_means(SET + ", else as pretrained")  # L_cycles at fine-tune time
    # ---
    grad_accum_steps: int | None = none_means("chosen from free GPU memory")  # micro-batches per GPU step
    weight_decay: float = 0.1
    puzzle_emb_weight_decay: float = 0.1
    ema: bool = True  # upstream's recipe: the evaluation uses the EMA weights and the live table
    freeze_weights: bool = False  # True: train only the new puzzle embeddings
    # epochs of the demo pairs; None: until the fine-tune's share of the clock, at most max_epochs
    finetune_epochs: int | None = none_means("a length fitted to the clock (at most max_epochs)")
    max_steps: int | None = none_means("no step limit")  # besides the epochs and the deadline
    max_finetune_minutes: float | None = none_means("no cap")  # a cap on the fine-tune, besides the deadline
    validate_tasks: int | None = none_means("every evaluation task")  # validation: the first N tasks
    validate_unseen_only: bool = False  # validation: only tasks absent from the weights' pretraining data
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto = trm.model.pick_dtype: bf16 on cc >= 8.0 (L4), fp16 on T4, fp32 on CPU
    n_gpus: int | None = none_means("every visible GPU")
    cpu_workers: int = 1  # processes for a CPU fine-tune (> 1: torchrun with gloo; tests of that path)
    rank_timeout_minutes: float = 5.0  # a collective waits this long for a dead or stalled worker
    # the fine-tune saves its weights this often (evaluated if a worker dies)
    save_every_minutes: float = 30.0
    log_interval: int = 50  # fine-tune steps between progress lines
    crash_after_steps: int | None = none_means("off")  # test hook (env TRM_TTT_CRASH_AFTER_STEPS too)
    # test hook: the evaluation is SIGKILLed before round N + 1 (0: before any; trm.anytime.KILL_ENV)
    eval_kill_after_rounds: int | None = none_means("off")
    install_wheels: bool = True
    wheels_dir: str | None = none_means("found under the input root")  # the wheels bundle's folder
    # the weights: a kit bundle's folder, an upstream run's folder, or a step_N file used as named
    weights_dir: str | None = none_means("found under the input root")
    scratch_dir: str | None = none_means("/tmp/trm-ttt")  # work files, outside working/ (Kaggle's output)

    @classmethod
    def from_namespace(cls, ns: dict) -> TTTParams:
        """The fields found in `ns` (the notebook's globals(), with papermill's injected values),
        resolved: what is not there or None comes from the named settings, then the defaults."""
        return cls(**{f.name: ns[f.name] for f in dataclasses.fields(cls) if f.name in ns}).resolved()

    @property
    def epoch_limit(self) -> int | None:
        """The fine-tune's most epochs: finetune_epochs as written, else the clock-fitted run's cap."""
        return self.finetune_epochs or self.max_epochs

    def resolved(self) -> TTTParams:
        """Every FINETUNE parameter the user left None filled from SETTINGS; checked."""
        if self.settings not in SETTINGS:
            raise ValueError(f"settings = {self.settings!r}: unknown; choose one of {', '.join(SETTINGS)}")
        named, base = SETTINGS[self.settings], SETTINGS["default"]
        p = dataclasses.replace(self, **{k: named.get(k, base[k]) for k in FINETUNE
                                         if getattr(self, k) is None})
        p.check()
        return p

    def check(self) -> None:
        nones = {f.name: f.metadata.get("none") for f in dataclasses.fields(self)}
        for k in POSITIVE:
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v <= 0):
                raise ValueError(f"{k} = {v!r}: must be a positive number"
                                 + (f"; write None for {nones[k]}" if nones[k] else ""))
        if self.mode not in ("auto", "submit", "validate"):
            raise ValueError(f"mode = {self.mode!r}: choose auto, submit or validate")
