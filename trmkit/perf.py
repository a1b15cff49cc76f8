"""The kit's performance model: FLOPs of a training step and of an evaluation row, a roofline per
kernel class, and the projection of the competition notebook's hidden-set run onto Kaggle's GPUs.

    python -m trmkit.perf [--gpu-json bench/results/gpu-....json] [--ttt-json bench/results/gpu-ttt-....json]
                          [--test-file arc-agi_test_challenges.json] [--out projection.json]

Method (docs/performance.md has the figures and sources):
  rows      the notebook's fine-tune rows = epochs (finetune_epochs, else its max_epochs cap) x the test
            file's demo pairs (an epoch
            is one pass over the tasks, each task's demo pairs once: trm.engine's step count);
            evaluation rows = test inputs x (num_aug + 1) augmented versions.
  roofline  a measured GPU (the reference, an H200) splits a compiled training step into kernel
            classes (bench/gpu_check.py's profile). On a target GPU each class takes its measured
            time x (its roofline time there / its roofline time on the reference): the class keeps
            the efficiency it had on the reference, and what bounds it -- compute or memory
            bandwidth -- is decided per GPU from the class's arithmetic intensity:
              matmul      per GEMM of the block (qkv, o, gate_up, down), intensity M K N / (MK + KN + MN)
                          FLOP per byte at 2 bytes per element: K = 512 is short, so on an L4
                          (403 FLOP/B) three of the four are memory-bound;
              attention   fused (flash-class) kernels at intensity S / 2; where the GPU has no
                          FlashAttention (T4, sm75) the slow end takes the memory-efficient kernel at
                          NO_FLASH_SLOWDOWN;
              elementwise the fused norm / RoPE / SwiGLU / residual kernels and the float64 loss:
                          memory-bound, scaled by bandwidth;
              host        the rest of the measured per-row time (optimizer, host work): kept as it was
                          (fast end) or, at the slow end, the profile's host gaps not hidden.
  range     fast end: boost-clock peaks, host gaps hidden, compile at the reference's speed; slow end:
            base-clock peaks (power-capped cards run tensor work near base: T4 24, L4 47 TFLOP/s),
            no FlashAttention penalty, host gaps exposed, set-up and compilation HOST_SLOWDOWN x
            slower (a 4-core Kaggle VM against the reference's 16 cores).
  n GPUs    data parallel: per-row time / n, plus a ring all-reduce of the fp32 gradients (and the
            sparse table's rows) per optimizer step over PCIe.
  budget    the notebook's clock (trm.ttt.TTTParams defaults) and the fine-tune's stop rule
            (trm.finetune.eval_reserve_s): when the fine-tune is cut, how many epochs it got, and
            how many of the evaluation's rounds (trm.anytime) end before the deadline, as projected
            and were the evaluation 1.5, 2 or 3x slower than predicted.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path

from trm.paths import shared_dir
from trmkit.gpus import BY_MODEL, GPU, gpu_spec

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BYTES_PER_ELEMENT = 2  # bf16 / fp16 activations and cast weights
NO_FLASH_SLOWDOWN = 2.0  # memory-efficient (cutlass) attention vs FlashAttention-2: FA2's paper measures ~2x
HOST_SLOWDOWN = 4.0  # slow end: CPU-bound set-up / compile on a 4-core Kaggle VM vs the 16-core reference
KERNEL_CLASSES = ("matmul", "attention", "fused_triton", "norm_rope_elementwise", "float64_loss")
MEMORY_BOUND = ("fused_triton", "norm_rope_elementwise", "float64_loss")
# What the notebook runs on: Kaggle's two GPU offers, (model, count).
TARGETS = {"4xL4": ("L4", 4), "T4x2": ("T4", 2)}
MISPREDICTION = (1.5, 2.0, 3.0)  # the evaluation this many times slower than predicted: rounds it finishes


# ------------------------------------------------------------------------------------ FLOPs

def swiglu_inner(cfg) -> int:
    """trm.model.SwiGLU's hidden width: 2/3 x expansion x d, rounded up to a multiple of 256."""
    return -(round(cfg.expansion * cfg.hidden_size * 2 / 3) // -256) * 256


def gemms(cfg) -> list[tuple[int, int]]:
    """(K, N) of each matmul in one block application: qkv, o, gate_up, down."""
    d, i = cfg.hidden_size, swiglu_inner(cfg)
    return [(d, 3 * d), (d, d), (d, 2 * i), (i, d)]


def tokens(cfg) -> int:
    return cfg.prefix_len + cfg.seq_len


def net_flops(cfg) -> dict[str, float]:
    """FLOPs of one application of the recurrent net on one sequence, by kind."""
    S, d = tokens(cfg), cfg.hidden_size
    return {"matmul": cfg.n_layers * S * sum(2 * k * n for k, n in gemms(cfg)),
            "attention": cfg.n_layers * 4 * S * S * d}  # QK^T and AV


def train_flops_per_row(cfg) -> float:
    """One training row (one ACT step): H(L+1) applications forward, the last L+1 back-propagated
    (2x forward), and the lm head (forward + backward over the 900 grid tokens)."""
    H, L = cfg.n_outer_cycles, cfg.n_latent_steps
    return (H * (L + 1) + 2 * (L + 1)) * sum(net_flops(cfg).values()) \
        + 6 * cfg.seq_len * cfg.hidden_size * cfg.vocab_size


def eval_flops_per_row(cfg) -> float:
    """One evaluation row: halt_max_steps ACT steps of H(L+1) forward applications plus the lm head."""
    H, L = cfg.n_outer_cycles, cfg.n_latent_steps
    return cfg.halt_max_steps * (H * (L + 1) * sum(net_flops(cfg).values())
                                 + 2 * cfg.seq_len * cfg.hidden_size * cfg.vocab_size)


def dense_parameters(cfg) -> int:
    """nn.Parameter elements of a TRM (trm.model.count_parameters without building one)."""
    d, i, V = cfg.hidden_size, swiglu_inner(cfg), cfg.vocab_size
    per_block = 4 * d * d + (3 * d * i if not cfg.mlp_t else 0)
    return cfg.n_layers * per_block + 2 * V * d + 2 * d + 2


# ------------------------------------------------------------------------------------ roofline

def _time(flops: float, intensity: float, tflops: float, mem_gbs: float) -> float:
    """Roofline seconds: compute or memory, whichever bounds."""
    return max(flops / (tflops * 1e12), flops / intensity / (mem_gbs * 1e9))


def class_factors(cfg, micro_batch: int, ref: GPU, tgt: GPU, slow: bool) -> dict[str, float]:
    """Per kernel class: (time on tgt) / (time on ref), each scaled by what bounds it on each GPU.
    ref ran at its boost clock (it was measured); tgt at boost (fast end) or base clock (slow)."""
    t_tflops = tgt.tflops_sustained() if slow else tgt.tflops
    M = micro_batch * tokens(cfg)

    def matmul(tflops, mem):  # [M, K] x [K, N]: 2MKN FLOPs over MK + KN + MN elements
        return sum(_time(2 * M * k * n, 2 * M * k * n / ((M * k + k * n + M * n) * BYTES_PER_ELEMENT),
                         tflops, mem) for k, n in gemms(cfg))

    attn_intensity = tokens(cfg) / BYTES_PER_ELEMENT  # 4 S^2 d FLOPs over q, k, v, o: 4 S d elements

    def attention(tflops, mem):
        return _time(1.0, attn_intensity, tflops, mem)

    out = {"matmul": matmul(t_tflops, tgt.mem_gbs) / matmul(ref.tflops, ref.mem_gbs),
           "attention": attention(t_tflops, tgt.mem_gbs) / attention(ref.tflops, ref.mem_gbs)
           * (NO_FLASH_SLOWDOWN if slow and not tgt.flash else 1.0)}
    out.update({c: ref.mem_gbs / tgt.mem_gbs for c in MEMORY_BOUND})
    return out


@dataclasses.dataclass
class Reference:
    """What was measured on the reference GPU (per row unless named otherwise)."""

    gpu: GPU
    arch: object  # trm.model.ModelConfig the figures were measured at
    profile_s: dict[str, float]  # kernel class -> seconds in one profiled compiled step
    profile_batch: int  # rows of that step
    profile_gaps_s: float  # host gaps (wall minus kernels) in that step
    train_s_per_row: float  # the notebook's fine-tune, steady state
    eval_s_per_row: float  # the notebook's evaluation, process start and compile included
    fixed_s: dict[str, float]  # set-up seconds at the reference's host speed (dataset, load, compile)
    sources: dict[str, str]  # where each figure came from


def per_row_on(ref: Reference, cfg, tgt: GPU, slow: bool, micro_batch: int) -> dict[str, float]:
    """Seconds per training row and per evaluation row on one tgt GPU, for `cfg` (the reference's
    architecture with the notebook's recursion overrides: kernel time scales with the FLOPs)."""
    f = class_factors(cfg, micro_batch, ref.gpu, tgt, slow)
    kernels = {c: ref.profile_s.get(c, 0.0) / ref.profile_batch for c in KERNEL_CLASSES}
    host = max(0.0, ref.train_s_per_row - sum(kernels.values()))
    if slow:
        host = max(host, ref.profile_gaps_s / ref.profile_batch)
    flops = train_flops_per_row(cfg) / train_flops_per_row(ref.arch)
    train = flops * sum(kernels[c] * f[c] for c in KERNEL_CLASSES) + host
    # the evaluation runs the same kernel classes forward only: the same blend of factors
    blend = sum(kernels[c] * f[c] for c in KERNEL_CLASSES) / sum(kernels.values())
    eval_flops = eval_flops_per_row(cfg) / eval_flops_per_row(ref.arch)
    return {"train_s_per_row": train, "eval_s_per_row": ref.eval_s_per_row * blend * eval_flops,
            **{f"factor_{c}": round(v, 3) for c, v in f.items()}}


def allreduce_s_per_row(cfg, tgt: GPU, n_gpus: int, global_batch: int) -> float:
    """Ring all-reduce of the fp32 gradients and all-gather of the sparse rows, per training row."""
    if n_gpus <= 1:
        return 0.0
    grad_bytes = 4 * (dense_parameters(cfg) + global_batch * cfg.puzzle_emb_ndim)
    return 2 * (n_gpus - 1) / n_gpus * grad_bytes / (tgt.pcie_gbs * 1e9) / global_batch


# ------------------------------------------------------------------------------------ the hidden set

def hidden_set_rows(test_file: Path, epochs: int, num_aug: int) -> dict:
    """Rows the notebook runs on the tasks of `test_file` (the file it would see), and its source.
    epochs: the written finetune_epochs, else the max_epochs cap (the most a clock-fitted run does)."""
    from trm.anytime import version_bounds

    raw = Path(test_file).read_bytes()
    tasks = json.loads(raw)
    demo = sum(len(t["train"]) for t in tasks.values())
    inputs = sum(len(t["test"]) for t in tasks.values())
    return {"source": {"file": Path(test_file).name, "sha256": hashlib.sha256(raw).hexdigest(),
                       "tasks": len(tasks), "demo_pairs": demo, "test_inputs": inputs},
            "epochs": epochs, "num_aug": num_aug, "finetune_rows": epochs * demo,
            "eval_rows": inputs * (num_aug + 1),
            # cumulative rows at the end of each round of trm.anytime's schedule (every version kept)
            "eval_rows_by_round": [inputs * b for b in version_bounds(num_aug + 1, "anytime")[1:]]}


def budget(params, arch, total: dict[str, float], rows: dict) -> dict:
    """The notebook's clock on one scenario: the fine-tune starts after set-up, stops at the first of
    its epochs (written, or the max_epochs cap of a clock-fitted length), (1 - eval_share) of the time
    left, and the evaluation reserve (trm.finetune); then the evaluation runs in rounds
    (trm.anytime) until done or the deadline. Returns when the fine-tune was cut and why, the epochs it
    got, the rounds the evaluation finishes (also were it `slower` x slower than predicted), and the
    final margin (s)."""
    from trm.finetune import eval_reserve_s

    deadline = params.budget_hours * 3600 - params.safety_minutes * 60  # seconds after start()
    start = total["setup_s"]
    s_row = total["train_s_per_row"]
    stops = {"epochs" if params.finetune_epochs else "cap": start + rows["finetune_rows"] * s_row,
             "eval_share": start + (1 - params.eval_share) * (deadline - start),
             "eval reserve": deadline - eval_reserve_s(rows["eval_rows"], arch, s_row)}
    reason = min(stops, key=stops.get)
    stop = max(start, stops[reason])
    eval_s = total["eval_compile_s"] + rows["eval_rows"] * total["eval_s_per_row"]
    done = min(stop + eval_s, deadline)

    def rounds_done(slower: float) -> int:  # rounds whose rows end before the deadline
        t = stop + slower * total["eval_compile_s"]
        ends = [t + slower * n * total["eval_s_per_row"] for n in rows["eval_rows_by_round"]]
        return sum(e <= deadline for e in ends)

    return {"deadline_h": round(deadline / 3600, 2), "finetune_stopped_by": reason,
            "finetune_h": round((stop - start) / 3600, 2),
            "epochs_done": round((stop - start) / s_row / rows["source"]["demo_pairs"]),
            "eval_h": round(eval_s / 3600, 2), "finished_h": round(done / 3600, 2),
            "rounds": len(rows["eval_rows_by_round"]), "rounds_done": rounds_done(1.0),
            "rounds_done_if_eval_slower": {str(k): rounds_done(k) for k in MISPREDICTION},
            "margin_h": round((deadline - stop - eval_s) / 3600, 2), "fits": stop + eval_s <= deadline}


def project(ref: Reference, cfg, rows: dict, params, micro: dict[str, int] | None = None) -> dict:
    """Hours for the hidden set on each of TARGETS, as a range (fast, slow), with the notebook's
    budget applied to each end. micro: per-GPU micro-batch per target (the roofline's M)."""
    out = {}
    for name, (model, n) in TARGETS.items():
        tgt = BY_MODEL[model]
        mb = (micro or {}).get(name, params.global_batch_size // n)
        ends = {}
        for end, slow in (("fast", False), ("slow", True)):
            one = per_row_on(ref, cfg, tgt, slow, mb)
            host = HOST_SLOWDOWN if slow else 1.0
            total = {"train_s_per_row": one["train_s_per_row"] / n
                     + allreduce_s_per_row(cfg, tgt, n, params.global_batch_size),
                     "eval_s_per_row": one["eval_s_per_row"] / n,
                     "setup_s": host * (ref.fixed_s["dataset_s_per_task"] * rows["source"]["tasks"]
                                        + ref.fixed_s["load_s"] + ref.fixed_s["compile_s"]),
                     "eval_compile_s": host * ref.fixed_s["compile_s"]}
            ft_h = rows["finetune_rows"] * total["train_s_per_row"] / 3600
            ev_h = (total["eval_compile_s"] + rows["eval_rows"] * total["eval_s_per_row"]) / 3600
            ends[end] = {"tflops": round(tgt.tflops_sustained() if slow else tgt.tflops, 1),
                         "train_rows_per_s": round(1 / total["train_s_per_row"], 1),
                         "eval_rows_per_s": round(1 / total["eval_s_per_row"], 2),
                         "finetune_h": round(ft_h, 2), "eval_h": round(ev_h, 2),
                         "setup_h": round(total["setup_s"] / 3600, 3),
                         "total_h": round(ft_h + ev_h + total["setup_s"] / 3600, 2),
                         "factors": {k: v for k, v in one.items() if k.startswith("factor_")},
                         "budget": budget(params, cfg, total, rows)}
        out[name] = {"gpu": model, "count": n, "micro_batch": mb,
                     "hours_range": [ends["fast"]["total_h"], ends["slow"]["total_h"]], **ends}
    return out


# ------------------------------------------------------------------------------------ measurements

def newest(pattern: str) -> Path | None:
    found = sorted(RESULTS.glob(pattern), key=lambda p: (p.name[:len(pattern)], p.name))
    found = [p for p in found if "dryrun" not in p.name]
    return found[-1] if found else None


def reference_from(gpu_json: dict, ttt_json: dict, dtype: str = "bfloat16", names=("?", "?")) -> Reference:
    """The reference's figures from a bench/gpu_check.py JSON (profile_compiled) and a
    bench/gpu_ttt.py JSON (the notebook's fine-tune and evaluation at `dtype`); both measure the
    paper's ARC config (trm.model.ModelConfig's defaults) with the notebook's default recursion."""
    from trm.model import ModelConfig

    prof = gpu_json["profile_compiled"]
    run = ttt_json["runs"][dtype]
    ft, ds = run["finetune"], run["dataset"]
    gpu = gpu_spec(gpu_json["env"]["gpu"])
    if gpu is None:
        raise ValueError(f"reference GPU {gpu_json['env']['gpu']!r} is not in trmkit.gpus: no roofline")
    warm = max(0.0, ft["seconds"] - ft["steps"] * ft["steady_s_per_step"])
    n_tasks = ttt_json["tasks"]
    return Reference(
        gpu=gpu, arch=ModelConfig(), profile_s=dict(prof["seconds"]), profile_batch=int(prof["batch"]),
        profile_gaps_s=float(prof.get("idle_or_python_s") or 0.0), train_s_per_row=1 / ft["rows_per_s"],
        eval_s_per_row=run["eval_seconds"] / run["eval"]["n_rows"],
        fixed_s={"dataset_s_per_task": ds["seconds"] / n_tasks, "load_s": ft["setup_seconds"],
                 "compile_s": warm},
        sources={"profile": names[0], "notebook": names[1], "dtype": dtype})


def main(argv: list[str] | None = None) -> int:
    from trm.errors import cli_main

    return cli_main(_main, argv)  # a missing file or a bad --set: one line, exit 2


def _main(argv: list[str]) -> int:
    from trm.errors import UserError
    from trm.finetune import _arch_overrides
    from trm.model import ModelConfig
    from trm.ttt_params import TTTParams

    ap = argparse.ArgumentParser(prog="python -m trmkit.perf", description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu-json", type=Path, help="bench/gpu_check.py result (default: newest gpu-*.json)")
    ap.add_argument("--ttt-json", type=Path, help="bench/gpu_ttt.py result (default: newest gpu-ttt-*.json)")
    ap.add_argument("--test-file", type=Path, default=shared_dir() / "data" / "arc-prize-2025"
                    / "arc-agi_test_challenges.json", help="the test challenges the notebook would see "
                    "(default: the project's shared copy, trm.paths.shared_dir)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a notebook parameter (trm.ttt_params.TTTParams), as in its cell: what-ifs")
    ap.add_argument("--out", type=Path, help="write the projection JSON here too")
    a = ap.parse_args(argv)
    bad = [kv for kv in a.set if "=" not in kv]
    if bad:
        raise UserError(f"--set {bad[0]}: write NAME=VALUE, e.g. --set num_aug=64")
    overrides = dict(kv.split("=", 1) for kv in a.set)
    # as the notebook resolves them, with its checks: a misspelt name or a bad value is refused here
    params = TTTParams.from_namespace({k: _literal(v) for k, v in overrides.items()})
    if not a.test_file.is_file():
        raise FileNotFoundError(f"no test challenges at {a.test_file}: pass --test-file (the "
                                "arc-agi_test_challenges.json the notebook would see, e.g. from "
                                "make data-kaggle) or set TRM_SHARED_DIR")
    gpu_path = a.gpu_json or newest("gpu-2*.json")
    ttt_path = a.ttt_json or newest("gpu-ttt-*.json")
    if gpu_path is None or ttt_path is None:
        print("no GPU results to project from (bench/results/gpu-*.json and gpu-ttt-*.json)", file=sys.stderr)
        return 1
    ref = reference_from(json.loads(gpu_path.read_text()), json.loads(ttt_path.read_text()),
                         names=(gpu_path.name, ttt_path.name))
    rows = hidden_set_rows(a.test_file, params.epoch_limit, params.num_aug)
    cfg = _arch_overrides(ModelConfig(), params)  # the paper's ARC config, as the notebook fine-tunes it
    result = {"date": dt.date.today().isoformat(), "params_changed": overrides,
              "reference": {**dataclasses.asdict(ref), "gpu": ref.gpu.model, "arch": ref.arch.to_dict()},
              "rows": rows, "targets": project(ref, cfg, rows, params)}
    print(report(result))
    if a.out:
        a.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _literal(text: str):
    """A --set value as the notebook's parameters cell would hold it: a Python literal, else a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def report(result: dict) -> str:
    r = result["rows"]
    src = r["source"]
    lines = [f"hidden set ({src['file']}: {src['tasks']} tasks, {src['demo_pairs']} demo pairs, "
             f"{src['test_inputs']} test inputs): {r['epochs']} epochs = {r['finetune_rows']:,} "
             f"fine-tune rows; {r['eval_rows']:,} evaluation rows (num_aug {r['num_aug']})"]
    for name, t in result["targets"].items():
        lo, hi = t["hours_range"]
        lines.append(f"{name}: {lo}-{hi} h for {r['epochs']} epochs + evaluation")
        for end in ("fast", "slow"):
            e, b = t[end], t[end]["budget"]
            lines.append(f"  {end}: {e['tflops']} TFLOP/s, {e['train_rows_per_s']} train rows/s, "
                         f"{e['eval_rows_per_s']} eval rows/s; fine-tune {e['finetune_h']} h, "
                         f"eval {e['eval_h']} h, "
                         f"set-up {e['setup_h']} h | notebook: cut by {b['finetune_stopped_by']} after "
                         f"{b['finetune_h']} h ({b['epochs_done']} epochs), evaluation rounds "
                         f"{b['rounds_done']}/{b['rounds']}, done at {b['finished_h']} h of "
                         f"{b['deadline_h']} h ({'fits' if b['fits'] else 'DOES NOT FIT'}, "
                         f"margin {b['margin_h']} h); evaluation "
                         + ", ".join(f"{k}x slower: {v} rounds"
                                     for k, v in b["rounds_done_if_eval_slower"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
