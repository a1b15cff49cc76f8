"""The competition notebook's parameters, each declared once: its `parameters` cell sets these names.

Two rules (docs/kaggle.md, "The notebook"):
- **None means "not written".** A fine-tune setting that a named `settings` may choose (FINETUNE) is
  None until resolve() fills it: from SETTINGS[settings], else from SETTINGS["default"], the one
  place those defaults are written. What the user wrote always wins, equal to a default or not
  (`settings = "smoke"` with `lr = 1e-4` runs at 1e-4).
- **No number stands for another.** "As pretrained", "every GPU", "no cap", "auto" are None, never 0;
  a 0 or a negative count is refused with the spelling to use.

Strict: a name that is not a field (`num_augs` for num_aug), a value of the wrong type (the field's
annotation: `lr = "1e-4"`, `ema = "no"`) or out of its range (RULES: `ema_rate = 1.5`) is refused,
as one line naming the parameter and the fix (ParameterError), before anything runs.

Standard library only: the notebook reads this before any wheel is installed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
from dataclasses import dataclass, field

from trm.errors import UserError

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


def _choice(*names: str) -> tuple:
    return (lambda v: v in names), "choose " + ", ".join(names[:-1]) + " or " + names[-1]


POSITIVE = (lambda v: v > 0), "must be a positive number"
AT_LEAST_0 = (lambda v: v >= 0), "must be 0 or more"
OPEN_0_1 = (lambda v: 0 < v < 1), "must be between 0 and 1, both excluded"
# Each parameter's range besides its type (the type is the field's annotation, checked first):
# name -> (test, what the value must be). None passes wherever the annotation allows it.
RULES: dict[str, tuple] = {
    "settings": _choice(*SETTINGS),
    "mode": _choice("auto", "submit", "validate"),
    "optimizer": _choice("adam_atan2", "muon"),  # trm.config.TrainConfig.optimizer's values
    "device": _choice("auto", "cpu", "cuda"),
    "dtype": _choice("auto", "bfloat16", "float16", "float32"),  # what trm.model.pick_dtype takes
    "safety_minutes": AT_LEAST_0,
    "eval_share": OPEN_0_1,
    "ema_rate": OPEN_0_1,
    "weight_decay": AT_LEAST_0,
    "puzzle_emb_weight_decay": AT_LEAST_0,
    # 0 trains nothing, a probe the kit's own tests use (bit-for-bit weights through the fine-tune)
    "lr": AT_LEAST_0,
    "puzzle_emb_lr": AT_LEAST_0,
    "save_every_minutes": AT_LEAST_0,  # 0: after every step (tests of a worker's death)
    # counts and durations (None = the meaning in the field's comment; never 0)
    "budget_hours": POSITIVE, "check_minutes": POSITIVE, "check_tasks": POSITIVE, "num_aug": POSITIVE,
    "global_batch_size": POSITIVE, "lr_warmup_steps": POSITIVE,
    "finetune_epochs": POSITIVE, "max_epochs": POSITIVE, "eval_batch_size": POSITIVE,
    "halt_max_steps": POSITIVE,
    "n_outer_cycles": POSITIVE, "n_latent_steps": POSITIVE, "grad_accum_steps": POSITIVE,
    "max_steps": POSITIVE, "max_finetune_minutes": POSITIVE, "validate_tasks": POSITIVE, "n_gpus": POSITIVE,
    "cpu_workers": POSITIVE, "rank_timeout_minutes": POSITIVE,
    "log_interval": POSITIVE, "crash_after_steps": POSITIVE,
    "eval_kill_after_rounds": AT_LEAST_0,  # 0: before the first round
}

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
    # adam_atan2: upstream's; muon: Muon on the recurrent blocks' matrices, the rest as upstream
    # (docs/training.md)
    optimizer: str = "adam_atan2"
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
    def from_namespace(cls, ns: dict, ignore=()) -> TTTParams:
        """The fields found in `ns` (the notebook's globals(), with papermill's injected values),
        resolved: what is not there or None comes from the named settings, then the defaults.

        Every other name in `ns` must be a field, except `ignore` (the notebook's own names),
        `_`-prefixed names and modules: a misspelt parameter is refused, never silently dropped."""
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k, v in ns.items() if k not in fields and k not in ignore and not k.startswith("_")
                   and not isinstance(v, types.ModuleType)]
        if unknown:
            raise ParameterError(" ".join(_unknown(k, fields) for k in unknown))
        return cls(**{k: ns[k] for k in fields if k in ns}).resolved()

    @property
    def epoch_limit(self) -> int | None:
        """The fine-tune's most epochs: finetune_epochs as written, else the clock-fitted run's cap."""
        return self.finetune_epochs or self.max_epochs

    def resolved(self) -> TTTParams:
        """Every FINETUNE parameter the user left None filled from SETTINGS; checked (what the user
        wrote first, so that an error names the user's value)."""
        self.check()
        named, base = SETTINGS[self.settings], SETTINGS["default"]
        p = dataclasses.replace(self, **{k: named.get(k, base[k]) for k in FINETUNE
                                         if getattr(self, k) is None})
        p.check()
        return p

    def check(self) -> None:
        """Raise ParameterError for the first field whose value has the wrong type or range."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            error = _type_error(f, v)
            if error is None and v is not None and f.name in RULES and not RULES[f.name][0](v):
                error = RULES[f.name][1]
                error += _hint(f) if isinstance(v, int | float) else ""  # a number: what to write instead
            if error:
                raise ParameterError(f"{f.name} = {v!r}: {error}")


class ParameterError(UserError, ValueError):
    """A competition-notebook parameter that cannot run: one line, what and how to fix (a ValueError
    too, for callers that catch those)."""


# a field's annotation (a string: `from __future__ import annotations`) -> the type words of its errors
KINDS = {"int": "a whole number (int)", "float": "a number (float)", "bool": "True or False",
         "str": "a string"}


def _annotation(f: dataclasses.Field) -> tuple[str, bool]:
    """(base type name, None allowed) from a field's annotation such as "int | None"."""
    parts = [t.strip() for t in str(f.type).split("|")]
    base = [t for t in parts if t != "None"]
    if len(base) != 1 or base[0] not in KINDS:
        raise TypeError(f"TTTParams.{f.name}: annotation {f.type!r}: the checks read {', '.join(KINDS)}"
                        " [| None] only")
    return base[0], "None" in parts


def _a(v) -> str:
    """The value's type as the errors say it: "a string", "an int", "None"."""
    name = {str: "string", bool: "bool"}.get(type(v), type(v).__name__)
    return "None" if v is None else ("an " if name[0] in "aeiou" else "a ") + name


BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True,
              "false": False, "no": False, "off": False, "0": False}


def _number(text: str) -> int | float | None:
    for kind in (int, float):
        try:
            n = kind(text)
        except ValueError:
            continue
        return n if math.isfinite(n) else None
    return None


def _fixed(kind: str, v) -> str | None:
    """What the user probably meant, as the text to write (a string's own digits, unquoted), or None."""
    if isinstance(v, str):
        text = v.strip()
        if kind == "bool":
            return None if text.lower() not in BOOL_WORDS else repr(BOOL_WORDS[text.lower()])
        n = _number(text) if kind in ("int", "float") else None
        if n is None or kind == "int" and not float(n).is_integer():
            return None
        return text if kind == "float" or isinstance(n, int) else repr(int(n))
    if kind == "bool" and isinstance(v, int | float) and v in (0, 1):
        return repr(bool(v))
    if kind == "int" and isinstance(v, float) and v.is_integer():
        return repr(int(v))
    if kind == "str" and isinstance(v, os.PathLike):
        return repr(os.fspath(v))
    return None


def _type_error(f: dataclasses.Field, v) -> str | None:
    """What is wrong with the type of `v` for field `f`, with the fix; None when it is right."""
    kind, optional = _annotation(f)
    if v is None and optional:
        return None
    if kind == "bool":
        ok = isinstance(v, bool)
    elif kind == "int":
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif kind == "float":
        ok = isinstance(v, int | float) and not isinstance(v, bool)
        if ok and not math.isfinite(v):
            return f"must be a finite number{_hint(f)}"
    else:
        ok = isinstance(v, str)
    if ok:
        return None
    must = KINDS[kind] + (" or None" if optional else "")
    fix = _fixed(kind, v) if v is not None else None
    if fix is not None:
        return f"must be {must}, not {_a(v)}; write {f.name} = {fix}"
    return f"must be {must}, not {_a(v)}{_hint(f)}"


def _hint(f: dataclasses.Field) -> str:
    """What to write instead: None for its meaning, if it has one, and a right value (the default,
    else the default settings')."""
    example = SETTINGS["default"].get(f.name) if f.default is None else f.default
    none = f.metadata.get("none")
    hints = [f"write None for {none}"] if none else []
    hints += [f"e.g. {f.name} = {example!r}"] if example is not None else []
    return "; " + ", or ".join(hints) if hints else ""


def _unknown(name: str, fields: list[str]) -> str:
    close = difflib.get_close_matches(name.lower(), fields, n=1, cutoff=0.6)
    fix = f"did you mean {close[0]}?" if close else "not a field of TTTParams (trm/ttt_params.py); remove it"
    return f"{name}: unknown parameter; {fix}"


for _f in dataclasses.fields(TTTParams):  # an annotation the checks cannot read fails at import, not at a run
    _annotation(_f)
assert set(RULES) <= {f.name for f in dataclasses.fields(TTTParams)}, set(RULES)
