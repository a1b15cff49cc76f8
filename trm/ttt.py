"""Test-time training (TTT) on the hidden ARC tasks: the Kaggle competition notebook's logic.

The notebook (kaggle/trm_arc2_inference_notebook.py; docs/kaggle.md) holds a bootstrap, parameters
and five calls:

    ctx = start()                    # clock starts; competition folder found; fallback submission.json
    params = TTTParams.from_namespace(globals(), ignore=NOTEBOOK_NAMES)  # strict: a typo is refused
    install(ctx, params)             # wheels / weights bundles found; wheels pip-installed offline
    report = run(ctx, params)        # dataset -> fine-tune to a deadline -> vote -> submission.json
    print(summary(report))

Why TTT (docs/kaggle.md): offline weights know nothing about the hidden tasks. The puzzle table
has one learned row per *training* puzzle, so a hidden task must get a fresh row, initialised to
the mean of the pretrained rows (upstream's load_checkpoint reset; a slim checkpoint carries just
that mean row), and those rows -- plus, by default, the whole network -- are fine-tuned on the
hidden tasks' demonstration pairs, augmented like the training data. Inference-only TRM scores ~0
on Kaggle; NVARC (1st place) and Trelis fine-tuned inside the notebook this way.

Flow of `run`:
  1. mode and budget, from the data: hidden test tasks (ids absent from every attached
     *_solutions.json and every *_challenges.json but the test file) always get "submit", every task
     and the full budget. The public placeholder (every id known) gets "validate" and a short check:
     the evaluation tasks go through the same path and the official score is printed;
     submission.json stays the (valid) fallback.
     KAGGLE_IS_COMPETITION_RERUN, whose presence and value in the scoring rerun Kaggle does not
     document, can only lengthen a budget (placeholder + variable: "submit", full budget), never
     shorten one; the report records both signals and the budget chosen.
  2. dataset: the tasks' demo pairs -> train split (num_aug augmentations each), test inputs -> test
     split, outputs dummy (dataset_builder, in memory; the file is read as it is, never hash-checked).
  3. fine-tune in a subprocess (`python -m trm.finetune SPEC`, under torchrun when several GPUs
     are visible; trm.engine's Trainer does the steps) until its share of the clock, at most
     max_epochs (or the finetune_epochs written), then save; a hard kill backs the deadline up.
     Micro-batches per GPU are chosen from free memory.
  4. evaluate in a subprocess (`python -m trm.evaluate --rounds anytime`, torchrun-able): rounds over
     the augmented versions (trm.anytime: every test input's first versions before any input's next
     ones), each finished round saved and voted into a submission -> two distinct attempts per test
     input; merged with the fallback for any task not voted on, validated, written atomically.

Nothing after start() raises: once the fallback submission.json is written, a failure (a crash, a
kill, the deadline) is recorded in ttt_report.json ("status": ok | degraded: ... | failed: ...) and
printed as an alarm, and the notebook ends normally, since Kaggle scores a notebook that finished
(whether it scores one that raised is not documented). The sim and the tests treat any status but
"ok" as an error.

Clock: the deadline is start() + budget_hours - safety_minutes. The fine-tune stops at the first of
(a) its epochs: finetune_epochs as written, else the max_epochs cap; (b) (1 - eval_share) of the time
left after the dataset build; (c) the deadline minus trm.finetune.EVAL_RESERVE_FACTOR times the
evaluation time predicted from its own measured speed (+5 min): an evaluation row costs
halt_max_steps x H / (H + 2) training rows of FLOPs (forward only, every ACT step; a training row
runs H outer cycles forward and back-propagates through one), which run trm.finetune.EVAL_SLOWDOWN
times slower than a training row's (measured). The evaluation starts no round it cannot finish by
the deadline and is killed at it: a slower evaluation than predicted costs its last rounds' votes,
never the run.

Import-time dependencies are the standard library only (and trm.submission, which is stdlib-only):
the notebook imports this module from the repo bundle before any wheel is installed. torch,
numpy and the rest of the kit are imported inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from trm.atomic import write_json_atomic
from trm.kaggle_input import (
    BUNDLE_MARKERS,
    EVAL_CHALLENGES,
    EVAL_SOLUTIONS,
    TEST_CHALLENGES,
    all_known,
    find_bundle,
    find_competition_dir,
    find_weights,
    id_sources,
    known_by,
    read_json,
    unpack,
)
from trm.launch import stream, torchrun_command
from trm.submission import fallback_submission, score_submission, validate_submission
from trm.ttt_params import FINETUNE, TTTParams

CRASH_ENV = "TRM_TTT_CRASH_AFTER_STEPS"  # test hook: the fine-tune raises after N steps
FAULT_ENV = "TRM_TTT_FAULT"  # test hook "kill:RANK:STEP" / "stall:RANK:STEP": a worker dies / hangs
# other code competitions' rerun flag: undocumented here (docs/kaggle.md)
RERUN_ENV = "KAGGLE_IS_COMPETITION_RERUN"
EVAL_PROGRESS_S = 60  # the evaluation's progress lines in the notebook's log: at least this often


@dataclass
class Context:
    """What the notebook's cells pass along: the clock, the folders and the bundles."""

    t0: float
    input_root: Path
    working_dir: Path
    comp_dir: Path
    scratch: Path
    bundles: dict[str, Path | None] = field(default_factory=dict)
    placeholder: bool = False  # every test id is in an attached public file (trm.kaggle_input.id_sources)
    id_sources: dict[str, str | None] = field(default_factory=dict)  # test id -> the file that knew it
    rerun_var: str | None = None  # $KAGGLE_IS_COMPETITION_RERUN as found (None: not set)

    @property
    def rerun(self) -> bool:
        return bool(self.rerun_var)

    def budget(self, p: TTTParams) -> tuple[str, str]:
        """("full" | "short check", why). The short check is for the public placeholder only (the
        commit run Kaggle makes of every pushed version, or a local run); hidden tasks always get
        the full budget; the rerun variable can only lengthen a budget."""
        if not self.placeholder:
            return "full", "hidden test tasks (ids in no attached solutions or training/evaluation file)"
        if self.rerun:
            return "full", f"the public placeholder, but {RERUN_ENV}={self.rerun_var!r} lengthens it"
        if p.check_minutes is None:
            return "full", "the public placeholder with check_minutes = None"
        return "short check", "the public placeholder (every test id is in an attached public file)"

    def short_check(self, p: TTTParams) -> bool:
        return self.budget(p)[0] == "short check"

    def deadline(self, p: TTTParams) -> float:
        if self.short_check(p):
            return self.t0 + 60 * min(p.check_minutes, p.budget_hours * 60)
        return self.t0 + p.budget_hours * 3600 - p.safety_minutes * 60


def log(msg: str) -> None:
    print(f"[ttt {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- notebook steps

def start(input_root: str | None = None, working_dir: str | None = None) -> Context:
    """Start the clock, find the competition folder, write the fallback submission.json.

    Paths default to $TRM_KAGGLE_INPUT (/kaggle/input) and $TRM_KAGGLE_WORKING (/kaggle/working).
    The fallback (trm.submission.fallback_submission: the test input, then a flip of it) is
    validated and written atomically before anything that can fail runs.
    """
    t0 = time.time()
    root = Path(input_root or os.environ.get("TRM_KAGGLE_INPUT", "/kaggle/input"))
    working = Path(working_dir or os.environ.get("TRM_KAGGLE_WORKING", "/kaggle/working"))
    comp = find_competition_dir(root)
    challenges = read_json(comp / TEST_CHALLENGES)
    sub = fallback_submission(challenges)
    errors = validate_submission(sub, challenges)
    if errors:
        raise RuntimeError(f"fallback submission invalid: {errors[:5]}")
    write_json_atomic(working / "submission.json", sub)
    n_inputs = sum(len(t.get("test", [])) for t in challenges.values())
    log(f"fallback submission.json written: {len(challenges)} tasks, {n_inputs} test inputs "
        f"({comp / TEST_CHALLENGES})")
    scratch = Path(os.environ.get("TRM_TTT_SCRATCH", "/tmp/trm-ttt"))
    sources = id_sources(comp, challenges)
    placeholder = all_known(sources)
    counts = known_by(sources)
    where = [f"{n} in {f}" for f, n in counts.items() if f is not None]
    log(f"test challenges {'are' if placeholder else 'are not'} the public placeholder (test ids: "
        + ", ".join([*where, f"{counts.get(None, 0)} in no attached file"]) + "); "
        f"{RERUN_ENV} {'= ' + repr(os.environ[RERUN_ENV]) if RERUN_ENV in os.environ else 'not set'}")
    return Context(t0=t0, input_root=root, working_dir=working, comp_dir=comp, scratch=scratch,
                   placeholder=placeholder, id_sources=sources, rerun_var=os.environ.get(RERUN_ENV))


def install(ctx: Context, p: TTTParams) -> dict[str, Path | None]:
    """Find the wheels and weights bundles (any layout, extracted or not) and the kit code in use,
    and pip-install the wheels offline: `pip install --no-index --find-links DIR -r DIR/requirements.txt`
    (never compiles, never reaches the network; the image's torch/numpy are never replaced)."""
    p = p.resolved()
    log(f"settings {p.settings!r}: " + ", ".join(f"{k} {getattr(p, k)}" for k in FINETUNE))
    if p.scratch_dir:
        ctx.scratch = Path(p.scratch_dir)
    unpack = ctx.scratch / "bundles"
    ctx.bundles = {
        "wheels": Path(p.wheels_dir) if p.wheels_dir else find_bundle(ctx.input_root, "wheels", unpack),
        "code": repo_root(ctx),  # the kit in use (repo bundle folder, or the unpacked kit wheel)
        "weights": find_weights(Path(p.weights_dir) if p.weights_dir else ctx.input_root, unpack),
    }
    for k, v in ctx.bundles.items():
        log(f"{k} bundle: {v}")
    if ctx.bundles["weights"] is None:
        raise FileNotFoundError(f"no weights under {p.weights_dir or ctx.input_root}: neither the kit's "
                                f"weights bundle (a folder with {BUNDLE_MARKERS['weights']}) "
                                "nor an upstream checkpoint "
                                "(step_N with all_config.yaml beside it); attach the weights dataset")
    wheels = ctx.bundles["wheels"]
    if p.install_wheels and wheels is not None:
        cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(wheels),
               "-r", str(wheels / "requirements.txt"), "--disable-pip-version-check",
               "--no-warn-script-location"]
        if stream(cmd) != 0:
            raise RuntimeError(f"offline wheel install failed: {' '.join(cmd)}")
    elif p.install_wheels:
        log("no wheels bundle found: relying on the image's packages and the repo bundle")
    # unusable weights (cut off, not a torch file, a config that does not fit them) stop the run
    # here with trm.checkpoint's one line, before any work; the fallback submission.json stays
    from trm.sources import usable_checkpoint
    usable_checkpoint(ctx.bundles["weights"])
    return ctx.bundles


def repo_root(ctx: Context) -> Path:
    """The folder holding the `trm` package in use, for child processes' PYTHONPATH. When the
    notebook imported trm straight from an archive (the kit's wheel), that archive is unpacked."""
    import trm

    pkg = Path(trm.__file__).parent
    for anc in pkg.parents:
        if anc.is_file():  # "<archive>/<prefix>/trm": zipimport from a .whl or .zip
            return unpack(anc, ctx.scratch / "bundles") / pkg.relative_to(anc).parent
    return pkg.parent


def resolve_mode(ctx: Context, p: TTTParams) -> str:
    """"submit" on hidden tasks, whatever `mode` says (they are what is scored); on the placeholder
    "submit" with the rerun variable, else `mode` (auto = "validate")."""
    if p.mode not in ("auto", "submit", "validate"):
        raise ValueError(f"mode must be auto | submit | validate, got {p.mode!r}")
    if not ctx.placeholder or ctx.rerun:
        if p.mode == "validate":
            log("mode = validate ignored: " + ("hidden test tasks are always submitted" if not ctx.placeholder
                                               else f"{RERUN_ENV} is set"))
        return "submit"
    return "validate" if p.mode == "auto" else p.mode


def _first(d: dict, n: int | None) -> dict:
    return dict(d) if n is None else dict(list(d.items())[:n])


def _gpus(p: TTTParams) -> int:
    import torch

    if p.device == "cpu" or not torch.cuda.is_available():
        return 0
    n = torch.cuda.device_count()
    return n if p.n_gpus is None else min(n, p.n_gpus)


def _launch(module_args: list[str], n_procs: int, repo: Path, timeout: float | None,
            env: dict | None = None) -> int:
    """`python -m ...` (one process) or torchrun over n_procs, the kit in use first on PYTHONPATH."""
    path = os.pathsep.join([str(repo), *filter(None, [os.environ.get("PYTHONPATH")])])
    return stream(torchrun_command(n_procs, module_args), env={"PYTHONPATH": path, **(env or {})},
                  timeout=timeout)


def build_ttt_dataset(challenges: Path, out_dir: Path, num_aug: int, repo: Path, seed: int = 42) -> dict:
    """`python -m dataset_builder --challenges FILE`: demo pairs -> the train split (augmented), test
    inputs -> the test split (dummy outputs). A subprocess, like the fine-tune and the evaluation,
    so the runtime never imports the builder (which imports trm). Returns the build's counts."""
    summary = out_dir.with_name(out_dir.name + ".summary.json")
    rc = _launch(["dataset_builder", "--challenges", str(challenges), "--output-dir", str(out_dir),
                  "--num-aug", str(num_aug), "--seed", str(seed), "--quiet", "--force",
                  "--summary-json", str(summary)], 0, repo,
                 timeout=None)
    if rc != 0:
        raise RuntimeError(f"building the fine-tune dataset failed (exit code {rc}); "
                           "submission.json stays the fallback")
    return read_json(summary)


def _budget(ctx: Context, p: TTTParams, deadline: float) -> dict:
    """Which budget this run has and why (both signals recorded), logged and reported."""
    kind, why = ctx.budget(p)
    log(f"budget: {kind} ({why}): "
        + (f"{p.check_minutes:g} min on <= {p.check_tasks} tasks" if kind != "full"
           else f"{p.budget_hours:g} h less {p.safety_minutes:g} min safety, every task"))
    counts = known_by(ctx.id_sources)
    return {"kind": kind, "why": why, "test_ids_known": ctx.placeholder, "rerun_variable": ctx.rerun_var,
            "test_ids_known_by": {f: n for f, n in counts.items() if f is not None},
            "test_ids_unknown": counts.get(None, 0),
            "seconds": round(deadline - ctx.t0, 1), "full_hours": p.budget_hours,
            "safety_minutes": p.safety_minutes,
            "check_minutes": p.check_minutes, "check_tasks": p.check_tasks}


def _tasks(ctx: Context, p: TTTParams, mode: str, test: dict) -> tuple[dict, dict | None, dict, Path]:
    """(tasks to fine-tune and answer, their solutions or None, the tasks the written submission must
    cover, where it goes). Validation: the evaluation tasks, into working/validation/. The short
    check takes at most check_tasks tasks; the full budget every test task."""
    limit = (lambda n: min(n or p.check_tasks, p.check_tasks)) if ctx.short_check(p) else (lambda n: n)
    if mode == "validate":
        pool = read_json(ctx.comp_dir / EVAL_CHALLENGES)
        if p.validate_unseen_only:
            seen = pretrained_tasks(ctx.bundles.get("weights"))
            if seen is None:
                raise ValueError("validate_unseen_only: the weights record no pretraining task list (a kit "
                                 "weights bundle exported by this kit version does); set it to False")
            pool = {k: v for k, v in pool.items() if k not in seen}
        challenges = _first(pool, limit(p.validate_tasks))
        solutions = {k: v for k, v in read_json(ctx.comp_dir / EVAL_SOLUTIONS).items() if k in challenges}
        return challenges, solutions, challenges, ctx.working_dir / "validation" / "submission.json"
    return _first(test, limit(None)), None, test, ctx.working_dir / "submission.json"


def run(ctx: Context, p: TTTParams) -> dict:
    """The whole TTT pipeline (module docstring); returns the report also written to
    working/ttt_report.json. Raises on failure, leaving the fallback submission.json in place."""
    p = p.resolved()
    deadline = ctx.deadline(p)
    test = read_json(ctx.comp_dir / TEST_CHALLENGES)
    mode = resolve_mode(ctx, p)
    report: dict = {"mode": mode, "params": dataclasses.asdict(p), "status": "running",
                    "deadline_in_s": round(deadline - time.time(), 1)}
    report_path = ctx.working_dir / "ttt_report.json"
    report["budget"] = _budget(ctx, p, deadline)
    challenges, solutions, full, out_file = _tasks(ctx, p, mode, test)
    report.update(tasks=len(challenges), test_inputs=sum(len(t["test"]) for t in challenges.values()))
    log(f"mode {mode}: TTT on {report['tasks']} tasks / {report['test_inputs']} test inputs; "
        f"{(deadline - time.time()) / 3600:.2f} h left before the deadline")
    work = ctx.scratch / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    write_json_atomic(work / "challenges.json", challenges)
    if solutions is not None:  # labels for trm.evaluate's pass@K (never seen by the fine-tune)
        write_json_atomic(work / "solutions.json", solutions)
    try:
        t = time.time()
        repo = ctx.bundles.get("code") or repo_root(ctx)
        built = build_ttt_dataset(work / "challenges.json", work / "data", p.num_aug, repo)
        report["dataset"] = {"num_puzzle_identifiers": built["num_puzzle_identifiers"],
                             "splits": built["splits"], "seconds": round(time.time() - t, 1)}
        log(f"dataset built in {time.time() - t:.1f} s: {built['splits']}, "
            f"{built['num_puzzle_identifiers']} puzzle ids (all new: mean-initialised)")

        n_gpus = _gpus(p)
        eval_rows = built["splits"]["test"]["examples"]
        report["finetune"] = _finetune(ctx, p, work, repo, n_gpus, deadline, eval_rows)
        t = time.time()
        eval_dir, rc = _evaluate(p, work, repo, n_gpus, deadline, labelled=solutions is not None)
        report["eval_seconds"] = round(time.time() - t, 1)
        if not (eval_dir / "submission.json").is_file():
            raise RuntimeError(f"the evaluation ended (exit code {rc}) before its first round was voted; "
                               "submission.json stays the fallback")
        # written after the submission: a kill between the two leaves none (round 1 voted every input)
        metrics = read_json(eval_dir / "metrics.json") if (eval_dir / "metrics.json").is_file() else {}
        report["eval"] = {k: metrics.get(k) for k in ("n_rows", "n_votes", "n_fallback_attempts", "pass@1",
                                                      "pass@2", "rounds", "votes_per_input")}
        unvoted = set(metrics.get("tasks_without_votes") or ())
        report.update(finalize(read_json(eval_dir / "submission.json"), full, out_file, solutions,
                               model_tasks=[t for t in challenges if t not in unvoted]))
        if solutions is not None:
            report["validation"] = seen_unseen_scores(read_json(out_file), solutions,
                                                      pretrained_tasks(ctx.bundles.get("weights")))
        report["status"] = _eval_status(rc, metrics.get("rounds") or {})
    except Exception as e:  # the fallback (or the model's file) stays: recorded and printed, not raised
        report["status"] = f"failed: {type(e).__name__}: {e}"
    except BaseException as e:  # an interrupt: recorded, and it goes on
        report["status"] = f"failed: {type(e).__name__}: {e}"
        raise
    finally:
        report["elapsed_s"] = round(time.time() - ctx.t0, 1)
        write_json_atomic(report_path, report, indent=2)
    if report["status"] != "ok":
        _alarm(report, out_file)
    return report


def _eval_status(rc: int, rounds: dict) -> str:
    """"ok" when the evaluation ran every round; "degraded: why" when it voted some rounds only."""
    if rc != 0:
        return (f"degraded: the evaluation ended with exit code {rc} after {rounds.get('done')}/"
                f"{rounds.get('total')} rounds (the submission holds their votes)")
    if not rounds.get("complete", True):
        return (f"degraded: {rounds.get('stopped_by')} "
                f"({rounds.get('done')}/{rounds.get('total')} rounds voted)")
    return "ok"


def _alarm(report: dict, out_file: Path) -> None:
    """A run that did not complete says so where no one can miss it (the notebook still ends
    normally: what it wrote is valid and is what Kaggle scores)."""
    bar = "!" * 100
    fell = report.get("tasks_fallback_ids")
    log(f"{bar}\nTHE RUN DID NOT COMPLETE: {report['status']}\n"
        f"{out_file} is valid and is what gets scored: "
        + (f"{report.get('tasks_from_model')} tasks from the model, {len(fell)} from the fallback"
           if fell is not None else "the fallback (every task scores as the fallback does)")
        + f"\nttt_report.json records it (status).\n{bar}")


def _finetune(ctx: Context, p: TTTParams, work: Path, repo: Path, n_gpus: int, deadline: float,
              eval_rows: int) -> dict:
    """`python -m trm.finetune` (torchrun over the GPUs) until its share of the clock; returns its
    record (ttt_finetune.json). A worker that dies after a save leaves those weights to evaluate."""
    train_deadline = time.time() + (1 - p.eval_share) * (deadline - time.time())
    if p.max_finetune_minutes is not None:
        train_deadline = min(train_deadline, time.time() + 60 * p.max_finetune_minutes)
    spec = {"data": str(work / "data"), "weights": str(ctx.bundles["weights"]),
            "out": str(work / "finetuned"), "deadline": train_deadline, "final_deadline": deadline,
            "eval_rows": eval_rows, "params": dataclasses.asdict(p)}
    write_json_atomic(work / "finetune.json", spec)
    log(f"fine-tune on {f'{n_gpus} GPU(s)' if n_gpus else 'the CPU'} for up to "
        f"{(train_deadline - time.time()) / 60:.1f} min")
    # backstop: the worker stops itself at train_deadline; kill it if saving overruns by far
    n_procs = n_gpus if n_gpus else max(1, p.cpu_workers)
    rc = _launch(["trm.finetune", str(work / "finetune.json")], n_procs, repo,
                 timeout=train_deadline - time.time() + 0.5 * (deadline - train_deadline))
    saved = work / "finetuned" / "ttt_finetune.json"  # written with every (periodic or final) save
    if rc != 0 and not saved.is_file():
        raise RuntimeError(f"fine-tuning failed (exit code {rc}) before any weights were saved; "
                           "submission.json stays the fallback")
    record = read_json(saved)
    if rc != 0:  # a worker died or stalled: evaluate the last weights that were saved
        record["stopped_by"] = f"worker failure (exit code {rc}); last save at step {record['steps']}"
        record["stop_kind"] = "worker failure"
        log(f"fine-tuning failed (exit code {rc}); evaluating the weights saved at step {record['steps']}")
    return record


def _evaluate(p: TTTParams, work: Path, repo: Path, n_gpus: int, deadline: float,
              labelled: bool) -> tuple[Path, int]:
    """`python -m trm.evaluate --rounds anytime` on the fine-tuned weights (trm.anytime): every
    finished round is saved and voted into eval/submission.json, and the evaluation starts no round
    it cannot finish by the deadline; a kill at the deadline backs it up. Returns (its output
    folder, its exit code): a kill mid-round keeps the rounds before it."""
    from trm.anytime import KILL_ENV

    eval_dir = work / "eval"
    args = ["trm.evaluate", "--checkpoint", str(work / "finetuned"), "--data", str(work / "data"),
            "--output-dir", str(eval_dir), "--batch-size", str(_divisible(p.eval_batch_size, n_gpus)),
            "--device", "cpu" if n_gpus == 0 else "cuda", "--challenges", str(work / "challenges.json"),
            "--pictures", "0", "--rounds", "anytime", "--deadline", f"{deadline:.1f}",
            "--progress-seconds", str(EVAL_PROGRESS_S)] \
        + (["--dtype", p.dtype] if p.dtype != "auto" else []) \
        + (["--solutions", str(work / "solutions.json")] if labelled else [])
    env = {KILL_ENV: str(p.eval_kill_after_rounds)} if p.eval_kill_after_rounds is not None else {}
    rc = _launch(args, n_gpus, repo, timeout=deadline - time.time(), env=env)
    if rc != 0:
        log(f"the evaluation ended with exit code {rc}: voting from its finished rounds")
    return eval_dir, rc


def _divisible(batch: int, n_gpus: int) -> int:
    n = max(n_gpus, 1)
    return max(n, batch - batch % n)


def pretrained_tasks(weights: Path | None) -> set[str] | None:
    """The task ids whose puzzle rows the weights learned in pretraining (recorded by
    trm.checkpoint with the dataset), or None when the weights do not say (an upstream file)."""
    meta = Path(weights) / "meta.json" if weights is not None and Path(weights).is_dir() else None
    if meta is None or not meta.is_file():
        return None
    ids = (read_json(meta).get("dataset") or {}).get("task_ids")
    return set(ids) if isinstance(ids, list) else None


def seen_unseen_scores(sub: dict, solutions: dict, seen: set[str] | None) -> dict:
    """Validation scored twice: tasks the weights saw in pretraining (their demos shaped the
    network: an optimistic figure) and tasks they never saw (run as a hidden task is: the estimate
    for the leaderboard). Every task is fine-tuned with a mean-initialised row either way."""
    if seen is None:
        log("validation: the weights record no pretraining task list: seen / unseen cannot be told apart")
        return {"pretraining_tasks_known": False}
    out: dict = {"pretraining_tasks_known": True}
    for name, ids in (("seen", [t for t in solutions if t in seen]),
                      ("unseen", [t for t in solutions if t not in seen])):
        s = (score_submission({t: sub[t] for t in ids if t in sub}, {t: solutions[t] for t in ids})
             if ids else None)
        out[name] = {"tasks": sorted(ids), "score": s["score"] if s else None,
                     "n_correct": s["n_correct"] if s else 0,
                     "n_test_outputs": s["n_test_outputs"] if s else 0}
        log(f"validation, {name} in pretraining: {len(ids)} tasks" + (
            f", score {s['score']:.4f} ({s['n_correct']}/{s['n_test_outputs']})" if s else ""))
    return out


def finalize(predicted: dict, challenges: dict, out_file: Path, solutions: dict | None,
             model_tasks=None) -> dict:
    """Model attempts where present and valid (for the tasks in model_tasks, when given: those the
    evaluation voted on), the fallback elsewhere; validated; written atomically."""
    sub = fallback_submission(challenges)
    allowed = None if model_tasks is None else set(model_tasks)
    used = set()
    for task_id, entries in predicted.items():
        if allowed is not None and task_id not in allowed:
            continue
        if task_id in sub and isinstance(entries, list) and len(entries) == len(sub[task_id]):
            if not validate_submission({task_id: entries}, {task_id: challenges[task_id]}):
                sub[task_id] = entries
                used.add(task_id)
    errors = validate_submission(sub, challenges)
    if errors:
        raise RuntimeError(f"merged submission invalid, not written: {errors[:5]}")
    write_json_atomic(out_file, sub)
    n_same = sum(e["attempt_1"] == e["attempt_2"] for v in sub.values() for e in v)
    fell = [t for t in sub if t not in used]
    out = {"submission": str(out_file), "tasks_from_model": len(used), "tasks_fallback": len(fell),
           "tasks_fallback_ids": fell, "identical_attempts": n_same}
    log(f"wrote {out_file}: {len(used)} tasks from the model, {len(fell)} from the fallback; valid")
    if solutions is not None:
        s = score_submission(sub, solutions)
        out["score"] = {k: s[k] for k in ("score", "n_correct", "n_test_outputs", "n_tasks")}
        log(f"official score (micro over test outputs): {s['score']:.4f} = "
            f"{s['n_correct']}/{s['n_test_outputs']} on {s['n_tasks']} tasks")
    return out


def summary(report: dict) -> str:
    lines = [f"mode: {report.get('mode')}   status: {report.get('status')}   "
             f"elapsed: {report.get('elapsed_s', 0) / 60:.1f} min"]
    ft = report.get("finetune") or {}
    if ft:
        lines.append(f"fine-tune: {ft['steps']} steps in {ft['seconds'] / 60:.1f} min ({ft['stopped_by']}), "
                     f"{ft['world_size']} process(es), {ft['dtype']}, "
                     f"{ft['num_puzzle_identifiers']} puzzle ids "
                     f"(mean-initialised: {ft['mean_init']}), last loss {ft.get('last_loss')}")
    ev = report.get("eval") or {}
    if ev:
        rounds = ev.get("rounds") or {}
        lines.append(f"evaluation: {ev['n_rows']} augmented rows voted in "
                     f"{report['eval_seconds'] / 60:.1f} min ({rounds.get('done')}/{rounds.get('total')} "
                     f"rounds{'' if rounds.get('complete') else ', cut short'}), "
                     f"{ev['n_fallback_attempts']} fallback attempts"
                     + (f", pass@2 (per-task macro) {ev['pass@2']:.4f}"
                        if ev.get("pass@2") is not None else ""))
    if "submission" in report:
        lines.append(f"{report['submission']}: {report['tasks_from_model']} tasks from the model, "
                     f"{report['tasks_fallback']} fallback, "
                     f"{report['identical_attempts']} identical attempt pairs")
    val = report.get("validation") or {}
    for name in ("seen", "unseen") if val.get("pretraining_tasks_known") else ():
        v = val[name]
        lines.append(f"validation, tasks {name} in pretraining: {len(v['tasks'])}"
                     + (f", score {v['score']:.4f} ({v['n_correct']}/{v['n_test_outputs']})"
                        if v["tasks"] else "")
                     + (" (optimistic: their demos shaped the weights)" if name == "seen" else
                        " (as hidden tasks run: the leaderboard estimate)"))
    if "score" in report:
        s = report["score"]
        lines.append(f"official score: {s['score']:.4f} "
                     f"({s['n_correct']}/{s['n_test_outputs']} test outputs)")
    return "\n".join(lines)
