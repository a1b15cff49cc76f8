"""Time one TRM training step and one full eval pass at the paper ARC config.

    .venv/bin/python bench/model_step.py --dtype float32            # 2-8 min on a 2-core CPU
    .venv/bin/python bench/model_step.py --dtype bfloat16           # only sensible with AMX / AVX512-BF16
    .venv/bin/python bench/model_step.py --dtype bfloat16 --compile --device cuda
    .venv/bin/python bench/model_step.py --preset smoke               # seconds, for a sanity check

A training step = one ACT step: forward + backward of loss/B + SparseSignSGD + AdamATan2 steps.
An eval pass = halt_max_steps (16) ACT steps without grad, as upstream's evaluate().
Paper ARC config: hidden 512, 8 heads, 2 layers, T=3 (H_cycles), n=4 (L_cycles), 916 tokens,
batch 4, 14,079-row puzzle table. Upstream's code on a 2-core AMX CPU (docs/fidelity.md#cpu-baselines):
bf16 2.9-3.6 s/train step and 26 s/eval pass; fp32 6.9-8.1 s and 68 s. Process CPU time is printed too: on a
shared machine it is steadier than wall time (about 2x wall on an idle 2-core machine).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trm.model import TRM, ModelConfig, TRMWithLoss, count_parameters  # noqa: E402
from trm.optim import AdamATan2, SparseSignSGD  # noqa: E402

PRESETS = {
    "paper-arc": dict(hidden_size=512, num_heads=8, n_layers=2, n_outer_cycles=3, n_latent_steps=4,
                      halt_max_steps=16, puzzle_emb_ndim=512, num_puzzle_identifiers=14079),
    "smoke": dict(hidden_size=64, num_heads=4, n_layers=2, n_outer_cycles=2, n_latent_steps=2,
                  halt_max_steps=4, puzzle_emb_ndim=64, num_puzzle_identifiers=100),
}


def make_batch(B: int, cfg: ModelConfig, device, gen: torch.Generator) -> dict[str, torch.Tensor]:
    inputs = torch.randint(2, cfg.vocab_size, (B, cfg.seq_len), generator=gen, dtype=torch.int32)
    labels = torch.randint(2, cfg.vocab_size, (B, cfg.seq_len), generator=gen, dtype=torch.int32)
    labels[:, cfg.seq_len // 2:] = -100  # half the canvas is PAD, as in a mid-sized ARC grid
    ids = torch.randint(1, cfg.num_puzzle_identifiers, (B,), generator=gen, dtype=torch.int32)
    return {k: v.to(device) for k, v in dict(inputs=inputs, labels=labels, puzzle_identifiers=ids).items()}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--preset", default="paper-arc", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    ap.add_argument("--steps", type=int, default=2, help="timed training steps")
    ap.add_argument("--no-eval", action="store_true", help="skip the full eval pass")
    ap.add_argument("--compile", action="store_true", help="torch.compile the loss head")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = ModelConfig(**PRESETS[args.preset], forward_dtype=args.dtype)
    model = TRM(cfg).to(device)
    head = TRMWithLoss(model)
    run = torch.compile(head) if args.compile else head
    sign = SparseSignSGD(model, lr=1e-2, weight_decay=0.1)
    adam = AdamATan2(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(0)
    print(f"{args.preset}: {count_parameters(model):,} params, dtype {args.dtype}, batch {args.batch}, "
          f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"cpu capability {torch.backends.cpu.get_cpu_capability()}, compile {args.compile}")

    head.train()
    carry, times, cpu_times = None, [], []
    for i in range(args.warmup + args.steps):
        batch = make_batch(args.batch, cfg, device, gen)
        carry = carry or head.initial_carry(batch)
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        carry, loss, _, _, _ = run(carry, batch)
        sync(device)
        t1 = time.perf_counter()
        (loss / args.batch).backward()
        sync(device)
        t2 = time.perf_counter()
        sign.step()
        adam.step()
        sign.zero_grad()
        adam.zero_grad()
        sync(device)
        t3, c3 = time.perf_counter(), time.process_time()
        tag = "warm-up" if i < args.warmup else "timed"
        print(f"train step {i + 1} ({tag}): {t3 - t0:.2f} s  (fwd {t1 - t0:.2f}, bwd {t2 - t1:.2f}, "
              f"optim {t3 - t2:.3f}; cpu {c3 - c0:.2f} s)", flush=True)
        if i >= args.warmup:
            times.append(t3 - t0)
            cpu_times.append(c3 - c0)
    if times:
        print(f"TRAIN s/step: {sum(times) / len(times):.2f} (min {min(times):.2f}, n={len(times)}; "
              f"process cpu {sum(cpu_times) / len(cpu_times):.2f} s/step)")

    if not args.no_eval:
        head.eval()
        batch = make_batch(args.batch, cfg, device, gen)
        with torch.inference_mode():
            carry = head.initial_carry(batch)
            sync(device)
            t0, c0, n, done = time.perf_counter(), time.process_time(), 0, False
            while not done:
                carry, _, _, _, done = run(carry, batch)
                n += 1
            sync(device)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        print(f"EVAL s/pass: {dt:.1f} ({n} ACT steps, {dt / n:.2f} s/step; process cpu {dc:.1f} s)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS {rss:.2f} GB")


if __name__ == "__main__":
    main()
