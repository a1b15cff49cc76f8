"""Will the competition notebook's test-time training fit Kaggle's 12 h? Measure, then project.

    .venv/bin/python bench/ttt_budget.py                          # CPU: a TINY config (labelled), ~1 min
    .venv/bin/python bench/ttt_budget.py --config paper --device cuda [--micro-batch 96]
    .venv/bin/python bench/ttt_budget.py --config paper --device cuda --scale-to-l4x4 6

Measures, through the kit's own code paths (trm.train.Trainer.train_step on trm.data batches,
trm.evaluate.predict), on a synthetic TTT dataset built by trm.ttt.build_ttt_dataset:
  fine-tune  seconds per step at one micro-batch (warm steps only), hence rows/s;
  inference  rows/s of the evaluation (every row runs all halt_max_steps ACT steps);
  build      the TTT dataset from the competition's test file (240 tasks, num_aug 128), if found;
  memory     peak CUDA memory per micro-batch row (calibrates trm.ttt.ACT_BYTES_PER_UNIT).
Projects the notebook's defaults (trm.ttt.TTTParams: num_aug 128, global batch 384, halt_max_steps
as pretrained = 16, 12 h budget - 30 min safety; the fine-tune keeps max(5% of the clock, 2x its
predicted evaluation time + 5 min) for the evaluation) for the hidden set's 240 tasks / 259 inputs:
  * the wall time of a reference schedule -- 12,500 fine-tune steps at batch 384 (Trelis' run on
    4xL4; NVARC's 2000 epochs at batch 128 is about the same number of steps) -- plus the
    evaluation of 259 x 129 rows, as a fraction of the 12 h budget;
  * how many fine-tune steps the default budget buys on this device;
  * the worker's own evaluation-time prediction (from its training speed) next to the measured one:
    the prediction must not be below the measurement, or the evaluation reserve is too small.
--scale-to-l4x4 RATIO divides the measured device's speed by RATIO (= this GPU's throughput / one
L4's) and by 4 GPUs (linear data parallelism; the 6.8M-parameter all-reduce is small) to project
Kaggle's 4xL4. A suggested H100 ratio is about 6 (dense bf16 989 vs 121 TFLOP/s = 8.2x; HBM 3.35
vs 0.3 TB/s; take ~6 for realistic utilisation); measure an L4 directly where possible.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from trm import ttt
from trm.model import ModelConfig, pick_dtype

REPO = Path(__file__).resolve().parents[1]
HOURS = 3600.0
HIDDEN_TASKS, HIDDEN_TEST_INPUTS = 240, 259  # kaggle.md §1.1: the hidden set's shape
REFERENCE_STEPS = 12_500  # Trelis: 12.5k steps at batch 384 on 4xL4 (trm-upstream.md §10)

CONFIGS = {
    "paper": ModelConfig(hidden_size=512, num_heads=8, expansion=4.0, n_layers=2, n_outer_cycles=3,
                         n_latent_steps=4, halt_max_steps=16),
    # NOT the paper model: a CPU stand-in so the script runs in about a minute
    "tiny": ModelConfig(hidden_size=64, num_heads=2, expansion=2.0, n_layers=2, n_outer_cycles=2,
                        n_latent_steps=2, halt_max_steps=4, puzzle_emb_ndim=64, puzzle_emb_len=1),
}


def synthetic_tasks(n: int, seed: int = 0) -> dict:
    """ARC-shaped toy tasks with 3 demo pairs and one test input each, grids up to 30x30."""
    g = torch.Generator().manual_seed(seed)
    tasks = {}
    for i in range(n):
        def grid():
            h, w = (int(x) for x in torch.randint(10, 31, (2,), generator=g))
            return torch.randint(0, 10, (h, w), generator=g).tolist()
        tasks[f"{i:08x}"] = {"train": [{"input": grid(), "output": grid()} for _ in range(3)],
                             "test": [{"input": grid()}]}
    return tasks


def measure(cfg_name: str, device: torch.device, micro: int, steps: int, eval_rows: int) -> dict:
    from trm import distributed as D
    from trm.config import TrainConfig
    from trm.data import TrainSampler, load_split
    from trm.evaluate import predict
    from trm.train import Trainer

    dtype = str(pick_dtype(device, None)).removeprefix("torch.")
    work = Path(tempfile.mkdtemp(prefix="trm-ttt-bench-"))
    # one task: its eval_rows augmented versions are the test split; 3 demo pairs each feed training
    ttt.build_ttt_dataset(synthetic_tasks(1), work / "data", num_aug=max(1, eval_rows - 1))
    split = load_split(work / "data", "train")
    arch = dataclasses.replace(CONFIGS[cfg_name], forward_dtype=dtype, num_puzzle_identifiers=split.meta[
        "num_puzzle_identifiers"])
    cfg = TrainConfig(arch=arch, data_path=str(work / "data"), global_batch_size=micro, epochs=1000,
                      eval_interval=1000, evaluate=False, lr_warmup_steps=1, progress=False, device=str(device))
    ctx = D.DistContext(device=device)
    trainer = Trainer(cfg, ctx, split)
    sampler = TrainSampler(split, micro, 1000, 0)
    batches = sampler.iter_iteration(trainer.position)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps + 1):  # the first step (allocations, kernels' first calls) is not timed
        gbatch, _pos = next(batches)
        sync()
        t = time.perf_counter()
        trainer.train_step(gbatch)
        sync()
        times.append(time.perf_counter() - t)
    step_s = sorted(times[1:])[len(times[1:]) // 2]  # median warm step
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    model = trainer.model.eval()
    test = load_split(work / "data", "test")
    rows = min(eval_rows, test.num_examples)
    sync()
    t = time.perf_counter()
    predict(model, work / "data", global_batch_size=rows, device=device)  # all test rows, `rows` per batch
    sync()
    infer_rows_s = test.num_examples / (time.perf_counter() - t)
    return {"config": cfg_name, "device": str(device), "dtype": dtype, "micro_batch": micro, "step_s": step_s,
            "train_rows_s": micro / step_s, "infer_rows_s": infer_rows_s, "peak_bytes": peak,
            "halt_max_steps": arch.halt_max_steps, "arch": arch}


def build_time(num_aug: int) -> float | None:
    comp = Path(os.environ.get("TRM_SHARED_DIR", REPO.parent / "shared")) / "data" / "arc-prize-2025"
    f = comp / ttt.TEST_CHALLENGES
    if not f.is_file():
        return None
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        ttt.build_ttt_dataset(json.loads(f.read_text()), Path(d) / "data", num_aug)
        return time.perf_counter() - t


def fmt_h(seconds: float) -> str:
    return f"{seconds / HOURS:8.2f} h" if seconds >= 600 else f"{seconds:8.1f} s"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=["auto", "paper", "tiny"], default="auto",
                    help="auto: paper on CUDA, tiny on CPU")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--micro-batch", type=int, default=0, help="rows per timed step (default 96 on CUDA, 4 on CPU)")
    ap.add_argument("--steps", type=int, default=3, help="timed warm fine-tune steps")
    ap.add_argument("--eval-rows", type=int, default=0, help="inference batch (default 256 on CUDA, 8 on CPU)")
    ap.add_argument("--gpus", type=int, default=1, help="GPUs the notebook would use on this machine kind")
    ap.add_argument("--scale-to-l4x4", type=float, metavar="RATIO",
                    help="project Kaggle 4xL4: this GPU's speed / RATIO per L4, x4 GPUs")
    ap.add_argument("--no-build", action="store_true", help="skip timing the 240-task dataset build")
    a = ap.parse_args(argv)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if a.device == "auto" else a.device))
    cfg = a.config if a.config != "auto" else ("paper" if device.type == "cuda" else "tiny")
    micro = a.micro_batch or (96 if device.type == "cuda" else 4)
    eval_rows = a.eval_rows or (256 if device.type == "cuda" else 8)
    p = ttt.TTTParams()
    m = measure(cfg, device, micro, a.steps, eval_rows)
    gpus, label = a.gpus, f"{m['device']} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'})"
    if a.scale_to_l4x4:
        speed, gpus, label = 1.0 / a.scale_to_l4x4, 4, f"Kaggle 4xL4, projected from {label} / {a.scale_to_l4x4:g}"
    else:
        speed = 1.0
    train_rows_s = m["train_rows_s"] * speed * gpus
    infer_rows_s = m["infer_rows_s"] * speed * gpus
    step_s = p.global_batch_size / train_rows_s
    eval_rows_total = HIDDEN_TEST_INPUTS * (p.num_aug + 1)
    eval_s = eval_rows_total / infer_rows_s
    build_s = None if a.no_build else build_time(p.num_aug)
    overhead = 180.0  # kernel start, offline install, imports, checkpoint loads and saves (estimate)
    ref_total = (build_s or 0) + REFERENCE_STEPS * step_s + eval_s + overhead
    usable = p.budget_hours * HOURS - p.safety_minutes * 60 - (build_s or 0) - overhead
    arch = m["arch"]
    predicted_eval_s = eval_rows_total * arch.halt_max_steps * arch.n_outer_cycles / (arch.n_outer_cycles + 2) \
        / train_rows_s  # what trm.ttt.finetune predicts from its speed
    reserve = max(p.eval_share * usable, 2 * predicted_eval_s + 300)
    ft_budget = usable - reserve

    if cfg == "tiny":
        print("*** TINY CONFIG (hidden 64, H2 L2, halt 4): a CPU stand-in, NOT the paper model; the projection "
              "below only shows the arithmetic. Run --config paper on a GPU for real numbers. ***")
    a_ = m["arch"]
    print(f"model: {cfg} (hidden {a_.hidden_size}, {a_.n_layers} layers, H{a_.n_outer_cycles} L{a_.n_latent_steps}, "
          f"halt_max_steps {a_.halt_max_steps}), {m['dtype']} on {m['device']}")
    print(f"measured: fine-tune {m['step_s']:.3f} s/step at micro-batch {micro} = {m['train_rows_s']:.3g} rows/s; "
          f"inference {m['infer_rows_s']:.3g} rows/s (all {m['halt_max_steps']} ACT steps)")
    if m["peak_bytes"] is not None:
        per_row = m["peak_bytes"] / micro
        unit = (a_.prefix_len + a_.seq_len) * a_.hidden_size * a_.n_layers * (a_.n_latent_steps + 1)
        print(f"memory: peak {m['peak_bytes'] / 2**30:.2f} GiB = {per_row / 2**20:.0f} MiB per row "
              f"({per_row / unit:.0f} bytes per unit; trm.ttt.ACT_BYTES_PER_UNIT = {ttt.ACT_BYTES_PER_UNIT})")
    print(f"\nprojection for: {label}, {gpus} device(s)")
    print(f"notebook defaults: num_aug {p.num_aug}, global batch {p.global_batch_size}, lr {p.lr:g} / puzzle "
          f"{p.puzzle_emb_lr:g}, warm-up {p.lr_warmup_steps}, EMA {p.ema}, budget {p.budget_hours:g} h - "
          f"{p.safety_minutes:g} min safety, evaluation reserve >= {p.eval_share:.0%}")
    print(f"hidden set: {HIDDEN_TASKS} tasks, {HIDDEN_TEST_INPUTS} test inputs -> {eval_rows_total:,} eval rows")
    print(f"  dataset build (measured on this CPU) {fmt_h(build_s) if build_s is not None else '   n/a (no test file)'}")
    print(f"  fine-tune step at batch {p.global_batch_size}         {fmt_h(step_s)}")
    print(f"  evaluation ({eval_rows_total:,} rows)            {fmt_h(eval_s)}   (the fine-tune's prediction: "
          f"{fmt_h(predicted_eval_s).strip()}, {'OK: not below' if predicted_eval_s >= eval_s else 'TOO LOW vs'} "
          "the measurement)")
    print(f"  reference: {REFERENCE_STEPS:,} steps + eval + build + ~{overhead / 60:.0f} min overhead = "
          f"{fmt_h(ref_total).strip()} = {ref_total / (p.budget_hours * HOURS):.1%} of the {p.budget_hours:g} h budget")
    if ft_budget <= 0:
        print(f"  default budget: NO time left to fine-tune: the evaluation alone needs {eval_s / HOURS:.1f} h")
        return
    print(f"  default budget: {ft_budget / HOURS:.2f} h of fine-tuning = {ft_budget / step_s:,.0f} steps "
          f"(~{ft_budget / step_s * p.global_batch_size / (HIDDEN_TASKS * 3.3):,.0f} epochs of ~3.3 demo pairs x "
          f"{HIDDEN_TASKS} tasks); evaluation needs {eval_s / reserve:.0%} of its reserved {reserve / HOURS:.2f} h")


if __name__ == "__main__":
    main()
