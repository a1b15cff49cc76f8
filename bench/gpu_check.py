"""GPU check: measure the kit on a real accelerator and write one JSON of figures.

    python3 bench/gpu_check.py                 # on a CUDA machine (driven by bench/gpu_check.sh)
    python3 bench/gpu_check.py --dry-run       # CPU, tiny config: proves the script runs

Sections (each recorded even when it fails, with its error; `--budget` seconds in all, a section
that would not fit in what is left is skipped and listed):
  env         GPU name, compute capability, torch / CUDA / cuDNN versions
  ceiling     measured dense bf16 matmul TFLOP/s (8192^3): the realistic ceiling beside the datasheet
  cuda_tests  the test suite's `-m cuda` tests (dtype policy, fused vs pure AdamATan2, bf16 vs fp32)
  train       trm.train.Trainer.train_step at the paper ARC config (a real dataset of evaluation
              tasks) for per-GPU batches 96 and 192, bf16, per compile variant (--compile off,net,head):
              steps/s, tokens/s, peak memory, MFU
  profile     one eager training step under torch.profiler: time in attention, matmuls, the float64
              loss and everything else (Python overhead of the recursion shows as CPU-side gaps)
  eval        16-step evaluation throughput (rows/s), default and early-exit (bench/evaluate.py)
  smoke       the learning test (tests/test_learns.py) on the GPU, when time is left

MFU. One network application (2 post-norm blocks over S = 16 + 900 tokens, hidden d, SwiGLU
inner i) costs, per sequence,
    F_net = n_layers * S * (8 d^2 + 6 d i + 4 S d)         [qkv+o, gate_up+down, QK^T+AV]
One ACT training step runs H*(L+1) applications forward (15 at H=3, L=4), and back-propagates
through the last L+1 (5), costing 2x forward each; the lm head adds 3 * 2 S d V. So
    FLOPs/step = B * ((H*(L+1) + 2*(L+1)) * F_net + 6 * 900 * d * V)
and MFU = FLOPs/step * steps/s / peak, with peak = dense bf16 tensor-core FLOP/s of the GPU
(H100/H200 SXM: 989 TFLOP/s; L4: 121 TFLOP/s; A100: 312 TFLOP/s; T4: 65 TFLOP/s fp16).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trm.model import TRM, ModelConfig, TRMWithLoss, pick_dtype  # noqa: E402

# Dense (no sparsity) tensor-core peaks in FLOP/s, bf16 unless noted; from NVIDIA datasheets.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12, "A10": 125e12}


def peak_for(name: str) -> float | None:
    for key, val in PEAK_FLOPS.items():
        if key in name:
            return val
    return None


def paper_config(n_ids: int, dtype: str, tiny: bool = False) -> ModelConfig:
    if tiny:  # dry run: same code path, CPU-sized
        return ModelConfig(hidden_size=64, num_heads=2, n_layers=2, n_outer_cycles=2, n_latent_steps=2,
                           halt_max_steps=4, puzzle_emb_ndim=64, num_puzzle_identifiers=n_ids,
                           forward_dtype=dtype)
    return ModelConfig(hidden_size=512, num_heads=8, n_layers=2, n_outer_cycles=3, n_latent_steps=4,
                       halt_max_steps=16, puzzle_emb_ndim=512, num_puzzle_identifiers=n_ids,
                       forward_dtype=dtype)


def flops_per_step(cfg: ModelConfig, batch: int) -> float:
    d = cfg.hidden_size
    inter = -(-round(cfg.expansion * d * 2 / 3) // 256) * 256
    S = cfg.prefix_len + cfg.seq_len
    f_net = cfg.n_layers * S * (8 * d * d + 6 * d * inter + 4 * S * d)
    H, L = cfg.n_outer_cycles, cfg.n_latent_steps
    return batch * ((H * (L + 1) + 2 * (L + 1)) * f_net + 6 * cfg.seq_len * d * cfg.vocab_size)


def random_batch(batch: int, n_ids: int, device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 12, (batch, 900), generator=g, dtype=torch.int32)
    labels = torch.randint(0, 12, (batch, 900), generator=g, dtype=torch.int32)
    labels[:, 450:] = -100
    ids = torch.randint(1, n_ids, (batch,), generator=g, dtype=torch.int32)
    return {k: v.to(device) for k, v in dict(inputs=inputs, labels=labels, puzzle_identifiers=ids).items()}


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def build_data(out: Path, comp: Path, tasks: int, num_aug: int) -> Path:
    """A real dataset (evaluation tasks of the competition folder) for the Trainer and the eval."""
    from dataset_builder.build import BuildConfig, build_dataset

    build_dataset(BuildConfig(output_dir=out, kaggle_dir=comp, subsets=["evaluation"], test_set_name="evaluation",
                              tasks=tasks, num_aug=num_aug, quiet=True, force=True))
    return out


def train_throughput(device, data: Path, batch: int, compile_: str, steps: int, warmup: int, tiny: bool) -> dict:
    """Seconds per optimizer step of trm.train.Trainer.train_step (AdamATan2, sparse SignSGD, EMA,
    ACT carries: what `python -m trm.train` runs) at the paper config, one process.
    compile_: "off" | "net" (the Trainer's compile: the recurrent net) | "head" (bench only: the
    whole TRMWithLoss, loss included, compiled as one graph)."""
    import trm.distributed as D
    from trm.config import TrainConfig
    from trm.data import TrainSampler, load_split
    from trm.engine import EMA, Trainer

    dtype = "float32" if torch.device(device).type != "cuda" else "bfloat16"
    split = load_split(data, "train")
    meta = split.meta
    arch = dataclasses.replace(paper_config(meta["num_puzzle_identifiers"], dtype, tiny),
                               vocab_size=meta["vocab_size"], seq_len=meta["seq_len"])
    cfg = TrainConfig(arch=arch, data_path=str(data), global_batch_size=batch, epochs=1000, eval_interval=1000,
                      ema=True, compile=compile_ == "net", device=str(device), progress=False)
    ctx = D.DistContext(rank=0, world_size=1, local_rank=0, device=torch.device(device))
    torch.manual_seed(0)
    tr = Trainer(cfg, ctx, split)
    tr.ema = EMA(tr.model, cfg.ema_rate)
    if compile_ == "head":
        tr.head = torch.compile(tr.head)
    it = iter(TrainSampler(split, batch, 1000, 0).iter_iteration(tr.position))
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(warmup):
        tr.train_step(next(it)[0])
    sync(device)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step(next(it)[0])
    sync(device)
    dt_s = (time.perf_counter() - t0) / steps
    flops = flops_per_step(cfg.arch, batch)
    name = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "cpu"
    peak = peak_for(name)
    loss = tr.pop_metrics().get("train/loss")
    return {
        "batch_per_gpu": batch, "compile": compile_, "dtype": dtype, "tiny_config": tiny,
        "s_per_step": dt_s, "steps_per_s": 1 / dt_s, "tokens_per_s": batch * (arch.prefix_len + arch.seq_len) / dt_s,
        "warmup_s": warm_s, "flops_per_step": flops, "achieved_tflops": flops / dt_s / 1e12,
        "mfu": (flops / dt_s / peak) if peak else None, "peak_flops_used": peak, "train_loss": loss,
        "peak_mem_gib": (torch.cuda.max_memory_allocated(device) / 2**30) if name != "cpu" else None,
    }


def matmul_ceiling(device) -> dict:
    """Measured dense bf16 matmul rate (8192^3, random data), the realistic ceiling next to the datasheet."""
    n = 8192
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    sync(device)
    return {"bf16_matmul_tflops": 2 * n**3 * 10 / (time.perf_counter() - t0) / 1e12}


def profile_step(device, batch: int, tiny: bool, compiled: bool = False) -> dict:
    """Share of one training step's device time per kind of kernel (compiled: the net compiled as
    trm.train does on CUDA; fused Triton kernels then hold the norms, RoPE and elementwise work)."""
    from torch.profiler import ProfilerActivity, profile

    dtype = "bfloat16" if torch.device(device).type == "cuda" else "float32"
    cfg = paper_config(1024, dtype, tiny)
    model = TRMWithLoss(TRM(cfg)).to(device).train()
    if compiled:
        model.model.net.compile()
    data = random_batch(batch, 1024, device)
    carry = model.initial_carry(data)
    for _ in range(3):
        carry, loss, *_ = model(carry, data)
        loss.backward()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
    sync(device)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        carry, loss, *_ = model(carry, data)
        loss.backward()
        sync(device)
    wall = time.perf_counter() - t0
    use_cuda = torch.device(device).type == "cuda"
    buckets = {"attention": 0.0, "matmul": 0.0, "float64_loss": 0.0, "fused_triton": 0.0, "norm_rope_elementwise": 0.0}
    total = 0.0
    from torch.autograd import DeviceType

    # on CUDA only kernel events (device_type CUDA): an aten op's device time repeats its kernels'
    events = [ev for ev in prof.key_averages() if not use_cuda or getattr(ev, "device_type", None) == DeviceType.CUDA]
    for ev in events:
        t = (ev.self_device_time_total if use_cuda else ev.self_cpu_time_total) / 1e6
        if t <= 0:
            continue
        name = ev.key.lower()
        total += t
        if "attention" in name or "flash" in name or "sdpa" in name or "fmha" in name:
            buckets["attention"] += t
        elif any(k in name for k in ("gemm", "nvjet", "cutlass", "xmma", "matmul", "aten::mm", "linear")):
            buckets["matmul"] += t
        elif name.startswith("triton"):
            buckets["fused_triton"] += t
        elif "double" in name or "f64" in name:
            buckets["float64_loss"] += t
        else:
            buckets["norm_rope_elementwise"] += t
    return {"wall_s": wall, "kernel_s": total, "idle_or_python_s": max(0.0, wall - total) if use_cuda else None,
            "seconds": buckets, "batch": batch, "compiled": compiled,
            "top_ops": [(ev.key, (ev.self_device_time_total if use_cuda else ev.self_cpu_time_total) / 1e6)
                        for ev in sorted(events,
                                         key=lambda e: -(e.self_device_time_total if use_cuda else e.self_cpu_time_total))[:12]]}


def write_results(results: dict, out: Path | None, kind: str, gpu: str, dry_run: bool) -> Path:
    """bench/results/<kind>-<date>-<gpu slug>[-dryrun].json (or `out`), written atomically."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower()
    out = out or REPO / "bench" / "results" / f"{kind}-{results['date']}-{slug}{'-dryrun' if dry_run else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, out)
    return out


def env_info(device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "device": str(device)}
    if torch.device(device).type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), capability=list(torch.cuda.get_device_capability(device)),
                    gpu_count=torch.cuda.device_count(),
                    memory_gib=torch.cuda.get_device_properties(device).total_memory / 2**30,
                    picked_dtype=str(pick_dtype(device)))
    else:
        info.update(gpu=None, picked_dtype=str(pick_dtype(device)))
    return info


def run_cmd(cmd: list[str], timeout: int) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    out = (p.stdout + p.stderr)[-4000:]
    return {"cmd": " ".join(cmd), "rc": p.returncode, "wall_s": time.perf_counter() - t0, "tail": out}


def section(results: dict, name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # a failing section is recorded, the others still run
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    print(f"[{name}] {time.perf_counter() - t0:.1f}s: {json.dumps(results[name], default=str)[:600]}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny config, few steps")
    ap.add_argument("--out", type=Path, help="JSON path (default bench/results/gpu-<date>-<gpu>.json)")
    ap.add_argument("--comp-dir", type=Path, help="competition files for the datasets "
                    "(default ../shared/data/arc-prize-2025)")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--budget", type=float, default=420, help="seconds; sections that would not fit are skipped")
    ap.add_argument("--compile", default="off,net", help="compile variants to time: off,net,head")
    ap.add_argument("--skip", nargs="*", default=[], help="sections to skip")
    args = ap.parse_args()
    t_start = time.time()

    def left() -> float:
        return args.budget - (time.time() - t_start)

    cuda = torch.cuda.is_available() and not args.dry_run
    device = torch.device("cuda:0" if cuda else "cpu")
    tiny = args.dry_run or not cuda
    steps, warmup = (2, 1) if tiny else (args.steps, 3)
    batches = (2, 4) if tiny else (96, 192)
    py = sys.executable
    results: dict = {"date": dt.date.today().isoformat(), "dry_run": tiny, "skipped_for_budget": []}
    section(results, "env", lambda: env_info(device))
    gpu = results["env"].get("gpu") or "cpu"
    peak = peak_for(gpu)
    comp = (args.comp_dir or REPO.parent / "shared" / "data" / "arc-prize-2025").resolve()
    work = Path("/tmp/trm-gpu-check")
    data = build_data(work / "data", comp, tasks=16 if not tiny else 4, num_aug=63 if not tiny else 3)

    def want(name: str, need_s: float) -> bool:
        if name in args.skip:
            return False
        if left() < need_s:
            results["skipped_for_budget"].append(name)
            print(f"[{name}] skipped: {left():.0f} s left, needs ~{need_s:.0f} s", flush=True)
            return False
        return True

    if cuda and want("ceiling", 10):
        section(results, "ceiling", lambda: matmul_ceiling(device))
    if want("cuda_tests", 40):
        section(results, "cuda_tests", lambda: run_cmd(
            [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests/test_cuda.py",
             "tests/test_optim.py"], 300))
    runs = []
    variants = [c for c in args.compile.split(",") if c]
    for comp_ in variants:
        for b in batches:
            if (tiny and comp_ != "off") or not want(f"train_b{b}_{comp_}", {"off": 15, "net": 40}.get(comp_, 90)):
                continue  # compile on CPU costs minutes and proves nothing here
            res: dict = {}
            section(res, f"train_b{b}_{comp_}", lambda b=b, comp_=comp_: train_throughput(
                device, data, b, comp_, steps, warmup, tiny))
            runs.append({"name": f"train_b{b}_{comp_}", **next(iter(res.values()))})
            if cuda:
                torch.cuda.empty_cache()
    results["train"] = runs
    if want("profile", 20):
        section(results, "profile", lambda: profile_step(device, batches[0], tiny))
    if cuda and want("profile_compiled", 30):
        section(results, "profile_compiled", lambda: profile_step(device, batches[0], tiny, compiled=True))
    for comp_ in ("off", "on"):
        if want(f"eval_compile_{comp_}", 40):
            cmd = [py, "bench/evaluate.py", "--device", str(device), "--data", str(data), "--compile", comp_]
            cmd += ["--rows", "4", "--batch-size", "4", "--tiny"] if tiny else ["--rows", "384", "--batch-size", "384"]
            section(results, f"eval_compile_{comp_}", lambda cmd=cmd: run_cmd(cmd, max(60, int(left()))))
    if "smoke" not in args.skip and want("smoke", 120):
        env = {"TRM_TEST_DEVICE": str(device)}
        section(results, "smoke", lambda: run_cmd(
            ["env", *[f"{k}={v}" for k, v in env.items()], py, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
             "tests/test_learns.py"], max(60, int(left()))))

    results["goals"] = {
        "mfu_goal": 0.35,
        "best_mfu": max([r.get("mfu") or 0 for r in runs if isinstance(r, dict)] or [0]),
        "peak_flops_used": peak,
    }
    results["wall_s"] = round(time.time() - t_start, 1)
    out = write_results(results, args.out, "gpu", gpu, tiny)
    print("\nsummary")
    print(f"  gpu: {gpu}  torch {results['env'].get('torch')}  cuda {results['env'].get('cuda')}  "
          f"ceiling {results.get('ceiling')}")
    for r in runs:
        if "error" in r:
            print(f"  {r['name']}: error {r['error']}")
        else:
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "n/a"
            print(f"  train b={r['batch_per_gpu']:>3} compile={r['compile']}: {r['steps_per_s']:.2f} steps/s, "
                  f"{r['tokens_per_s']:.0f} tok/s, MFU {mfu}, peak mem {r.get('peak_mem_gib')}, warmup {r['warmup_s']:.1f}s")
    print(f"  skipped for budget: {results['skipped_for_budget']}; wall {results['wall_s']} s")
    print(f"  wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
