"""What the kit's notebooks (notebooks/01-03) call: dataset, training and evaluation display
helpers, and the in-notebook launch of training and evaluation. Tooling (IPython, matplotlib
imported inside the functions that need them); `trmkit.notebooks` runs the notebooks.
"""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import warnings
from pathlib import Path

from trm.launch import stream, torchrun_command
from trm.paths import runs_root

PROVENANCE = ("COMMANDS.txt", "TRM_COMMIT.txt", "ENVIRONMENT.txt", "config.json")

# In a kernel without ipywidgets, tqdm.auto warns "IProgress not found" and falls back to its text
# bar; importing it here once, silenced, keeps that warning out of every notebook's output.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import tqdm.auto  # noqa: F401


class MarkdownText:
    """Markdown for notebook display that also reads as plain text (papermill's terminal log
    and `print` show text/plain)."""

    def __init__(self, text: str):
        self.text = text

    def _repr_markdown_(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text


def _show(text: str) -> None:
    from IPython.display import display

    display(MarkdownText(text))


def show_dataset(summary: dict) -> None:
    """The builder's summary as a table: splits, groups (tasks), puzzles (versions), examples."""
    rows = ["| split | groups (tasks) | puzzles (augmented versions) | examples |", "|---|---|---|---|"]
    rows += [f"| {name} | {s['groups']} | {s['puzzles']} | {s['examples']} |"
             for name, s in summary["splits"].items()]
    subsets = ", ".join(f"{k} ({v} tasks)" for k, v in summary["subsets"].items())
    notes = [f"**{summary['output_dir']}**: subsets {subsets}; "
             f"test set(s) {', '.join(summary['test_set_names'])}; "
             f"num_aug {summary['num_aug']}, seed {summary['seed']}; "
             f"{summary['num_puzzle_identifiers']} puzzle "
             f"ids; built in {summary['seconds']:.1f} s."]
    if summary.get("not_full"):
        notes.append(f"{len(summary['not_full'])} task(s) got fewer than num_aug augmentations "
                     "(too few distinct versions; upstream accepts this too).")
    _show("\n\n".join(notes) + "\n\n" + "\n".join(rows))


def override_tokens(overrides) -> list[str]:
    """02_train's `overrides` as trm.train's argument tokens: a list (or tuple) as it is, one string
    split like a shell line (`papermill -p overrides "--resume runs/x"` injects a string)."""
    if isinstance(overrides, str):
        return shlex.split(overrides)
    return [str(x) for x in overrides]


def training_argv(preset: str | None, overrides=(), run_name: str | None = None,
                  data_path: str | None = None) -> list[str]:
    """trm.train's command-line arguments for the notebook's parameters (overrides win, as last).
    overrides: a list of tokens, or one string (override_tokens)."""
    argv = [f"--preset={preset}"] if preset else []
    argv += [f"--data_path={data_path}"] if data_path else []
    argv += [f"--run_name={run_name}"] if run_name else []
    return argv + override_tokens(overrides)


def resolve_training(preset: str | None, overrides=(), run_name: str | None = None,
                     data_path: str | None = None):
    """(TrainConfig, argv) with run_name and run_dir fixed, so the caller knows the run dir up front.

    Same rules as trm.train: --resume without a preset continues the saved config; the run dir
    is $TRM_RUNS_DIR/<run_name> (default runs/), the resumed run's dir for --resume, and a
    missing run name becomes <preset>-<UTC time>-<8 hex> (unique). A fresh run into a directory
    that already holds a run is refused here, before any notebook starts (trm.runlock).
    """
    from trm.config import config_from_cli
    from trm.runlock import check_run_dir, place_run

    argv = training_argv(preset, overrides, run_name, data_path)
    cfg = config_from_cli(argv)
    place_run(cfg)  # the trainer's own rule
    check_run_dir(cfg.run_dir, resume=bool(cfg.resume))
    argv += [f"--run_name={cfg.run_name}", f"--run_dir={cfg.run_dir}"]
    return cfg, argv


def launch_training(preset: str | None, overrides=(), n_gpus: int = 1, run_name: str | None = None,
                    data_path: str | None = None, progress_every: float = 20.0) -> Path:
    """Train and return the run directory.

    n_gpus > 1: `torchrun --standalone --nproc-per-node n_gpus -m trm.train ARGS` as a subprocess,
    its output streamed line by line; otherwise trm.train.train(config) in this process. The
    tqdm bar is off (--progress false; an explicit override wins): a progress line from
    metrics.jsonl is printed every `progress_every` seconds instead (by the trainer itself).
    overrides: a list of tokens, or one string (override_tokens).
    """
    cfg, argv = resolve_training(preset, ["--progress=false", f"--progress_seconds={progress_every}",
                                          *override_tokens(overrides)], run_name, data_path)
    run_dir = Path(cfg.run_dir)
    print(f"run directory: {run_dir}", flush=True)
    if n_gpus > 1:
        cmd = torchrun_command(n_gpus, ["trm.train", *argv])
        print("$ " + " ".join(cmd), flush=True)
        rc = stream(cmd)
        if rc != 0:
            raise subprocess.CalledProcessError(rc, cmd)
    else:
        from trm.train import train

        train(cfg, argv=argv)
    return run_dir


def show_run(run_dir: str | Path, max_env_lines: int = 12) -> None:
    """Training curves inline (curves.png, drawn from metrics.jsonl if missing), the checkpoints,
    and the run's provenance files (the pip freeze part of ENVIRONMENT.txt is cut)."""
    from IPython.display import Image, display

    run_dir = Path(run_dir)
    png, metrics = run_dir / "curves.png", run_dir / "metrics.jsonl"
    if metrics.is_file() and (not png.is_file() or png.stat().st_mtime < metrics.stat().st_mtime):
        from trm.plots import plot_training_curves

        plot_training_curves(metrics, png)
    if png.is_file():
        display(Image(filename=str(png)))
    ckpts = sorted((run_dir / "checkpoints").glob("step_*"),
                   key=lambda c: int(c.name[5:]) if c.name[5:].isdigit() else -1)
    lines = [f"**Run directory** `{run_dir}`", "",
             "**Checkpoints:** " + (", ".join(f"`{c.relative_to(run_dir)}`" for c in ckpts) or "none")]
    for name in PROVENANCE:
        f = run_dir / name
        if not f.is_file():
            continue
        text = f.read_text()
        if name == "ENVIRONMENT.txt":
            head = text.split("# pip freeze")[0].rstrip().splitlines()
            text = "\n".join(head[:max_env_lines]) + "\n# (pip freeze: see the file)"
        lines += ["", f"**{name}**", "```", text.rstrip(), "```"]
    _show("\n".join(lines))


def eval_output_dir(checkpoint: str | Path, output_dir: str | Path | None = None) -> Path:
    """output_dir, or <run dir>/evaluate/<step_N> for a checkpoint inside a run, else
    runs/evaluate/<checkpoint name>. (Training's own evals go to <run dir>/eval/.)"""
    if output_dir:
        return Path(output_dir)
    from trm.checkpoint import find_checkpoint

    ckpt = find_checkpoint(checkpoint, resumable=False)
    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / "evaluate" / ckpt.name
    return runs_root() / "evaluate" / ckpt.name


def run_evaluation(checkpoint, data, output_dir, *, batch_size: int = 256, device: str = "auto",
                   early_exit: bool = False, pictures: int = 6, challenges=None, solutions=None) -> dict:
    """trm.evaluate's CLI, in process: predict, vote, score, write submission.json etc."""
    from trm.checkpoint import find_checkpoint
    from trm.evaluate import main as evaluate_main

    argv = ["--checkpoint", str(find_checkpoint(checkpoint, resumable=False)), "--data", str(data),
            "--output-dir", str(output_dir),
            "--batch-size", str(batch_size), "--device", device, "--pictures", str(pictures)]
    argv += ["--early-exit"] if early_exit else []
    argv += ["--challenges", str(challenges)] if challenges else []
    argv += ["--solutions", str(solutions)] if solutions else []
    return evaluate_main(argv)


def _fmt(v, spec: str = ".4f") -> str:
    return "n/a (no labels)" if v is None else format(v, spec)


def metrics_rows(m: dict) -> list[tuple[str, str]]:
    """(label, value) pairs: solve rates first, then per-cell / per-row accuracies, then counts."""
    rows = [(f"pass@{k}"
             + (" (upstream headline: per-task macro average)" if k == "2" else " (per-task macro)"),
             _fmt(v)) for k, v in ((key[5:], v) for key, v in m.items() if key.startswith("pass@"))]
    score = _fmt(m.get("kaggle_score"))
    if m.get("kaggle_score") is not None:
        score += f" = {m['kaggle_correct']}/{m['n_test_outputs']} test outputs"
    rows.insert(min(2, len(rows)),
                ("Kaggle score (official: either attempt exact, micro over test outputs)", score))
    rows += [("token accuracy (per cell, NOT a solve rate)", _fmt(m.get("token_accuracy"))),
             ("exact row accuracy (per augmented row, NOT a solve rate)", _fmt(m.get("exact_row_accuracy")))]
    rows += [(k, str(m[k])) for k in ("n_tasks", "n_test_outputs", "n_rows", "n_fallback_attempts",
                                      "mean_steps", "checkpoint", "step") if m.get(k) is not None]
    return rows


def metrics_table(m: dict):
    """The evaluation metrics as a Markdown table (a notebook cell's value displays it)."""
    return MarkdownText("| metric | value |\n|---|---|\n"
                        + "\n".join(f"| {k} | {v} |" for k, v in metrics_rows(m)))


def headline(m: dict) -> str:
    """One line for terminals: pass@2, Kaggle score, token accuracy (labelled)."""
    return (f"pass@2 {_fmt(m.get('pass@2'))} | Kaggle score {_fmt(m.get('kaggle_score'))} "
            f"({m.get('kaggle_correct')}/{m.get('n_test_outputs')} test outputs) | "
            f"token accuracy {_fmt(m.get('token_accuracy'))} (per cell, NOT a solve rate)")


def read_per_task(output_dir) -> list[dict]:
    with open(Path(output_dir) / "per_task.csv", newline="") as f:
        return list(csv.DictReader(f))


def show_solved(output_dir, max_rows: int = 20) -> None:
    """Solved / unsolved test inputs from per_task.csv, and the first rows of it."""
    rows = read_per_task(output_dir)
    solved = [r for r in rows if r["solved"] == "1"]
    unsolved = [r for r in rows if r["solved"] == "0"]
    unknown = len(rows) - len(solved) - len(unsolved)
    text = [f"**Solved {len(solved)} / {len(rows)} test inputs**"
            + (f" ({unknown} without labels)" if unknown else "") + f", unsolved {len(unsolved)}."]
    if solved:
        text.append("Solved: " + ", ".join(f"`{r['task']}[{r['test_index']}]`" for r in solved))
    cols = ["task", "test_index", "solved", "correct_rank", "n_votes", "n_candidates", "attempt_1_source",
            "attempt_2_source"]
    table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows[:max_rows]]
    more = f"\n\n({len(rows) - max_rows} more rows in per_task.csv)" if len(rows) > max_rows else ""
    _show("\n\n".join(text) + "\n\n" + "\n".join(table) + more)


def show_pictures(output_dir, n: int = 4) -> None:
    """The first n task pictures written by the evaluation (input, attempts, truth)."""
    from IPython.display import Image, display

    pics = sorted((Path(output_dir) / "pictures").glob("*.png"))
    if not pics:
        print("no pictures (pictures=0, or matplotlib missing)")
    for p in pics[:n]:
        display(Image(filename=str(p)))


def challenges_for(data, challenges=None) -> dict:
    """The challenges the submission must cover: the given file, else the dataset's test_puzzles.json."""
    if challenges:
        return json.loads(Path(challenges).read_text())
    from trm.data import load_test_puzzles

    return {t: {"train": task.get("train", []), "test": [{"input": p["input"]} for p in task["test"]]}
            for t, task in load_test_puzzles(data).items()}


def check_submission(output_dir, data, challenges=None) -> None:
    """Validate output_dir/submission.json with trm.submission and print the verdict; raises
    ValueError when it is invalid."""
    from trm.submission import validate_submission

    path = Path(output_dir) / "submission.json"
    ch = challenges_for(data, challenges)
    errors = validate_submission(json.loads(path.read_text()), ch)
    n_inputs = sum(len(t["test"]) for t in ch.values())
    verdict = "VALID" if not errors else f"INVALID ({len(errors)} errors: {errors[:3]})"
    print(f"{path}: {verdict} against {len(ch)} tasks / {n_inputs} test inputs")
    if errors:
        raise ValueError(f"{path} is not a valid submission: {errors[:5]}")
