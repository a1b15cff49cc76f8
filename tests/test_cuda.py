"""CUDA-only checks: `make test` runs them where a CUDA device is visible (bench/gpu_check.sh: `-m cuda`);
without one (CI) tests/conftest.py deselects them.

Tolerances: bf16 keeps 8 mantissa bits (relative rounding ~4e-3 per op); over one ACT step of
the smoke-sized recursion (H*(L+1) = 6 applications of a 2-block post-norm net) we accept
logits within 0.15 absolute / 5 % of their scale, and gradients whose cosine similarity with
the fp32 CPU gradients is >= 0.98 per tensor.
"""

from __future__ import annotations

import pytest
import torch

from trm.model import TRM, ModelConfig, TRMWithLoss, pick_dtype
from trm.optim import AdamATan2

pytestmark = pytest.mark.cuda  # deselected where no CUDA device is visible (tests/conftest.py)


def _cfg(dtype: str) -> ModelConfig:
    return ModelConfig(hidden_size=128, num_heads=4, n_layers=2, n_outer_cycles=2, n_latent_steps=2,
                       halt_max_steps=4, halt_exploration_prob=0.0, puzzle_emb_ndim=128,
                       num_puzzle_identifiers=16, forward_dtype=dtype)


def _batch(device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(2, 12, (4, 900), generator=g, dtype=torch.int32)
    labels = torch.randint(2, 12, (4, 900), generator=g, dtype=torch.int32)
    labels[:, 300:] = -100
    ids = torch.tensor([1, 2, 3, 2], dtype=torch.int32)
    return {k: v.to(device) for k, v in dict(inputs=inputs, labels=labels, puzzle_identifiers=ids).items()}


def test_dtype_policy_on_this_gpu():
    major, _ = torch.cuda.get_device_capability()
    want = torch.bfloat16 if major >= 8 else torch.float16
    assert pick_dtype("cuda") == want
    assert pick_dtype("cuda", "float32") == torch.float32


def test_bf16_forward_backward_matches_cpu_fp32():
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("bf16 needs compute capability >= 8.0")
    torch.manual_seed(0)
    ref = TRMWithLoss(TRM(_cfg("float32"))).train()
    with torch.no_grad():
        ref.model.puzzle_emb.weights.normal_(0, 0.1)
    gpu = TRMWithLoss(TRM(_cfg("bfloat16"))).train()
    state = {k: (v.to(torch.bfloat16) if k in ("H_init", "L_init") else v)
             for k, v in ref.model.state_dict().items()}
    gpu.model.load_state_dict(state)
    gpu = gpu.cuda()

    outs = []
    for model, dev in ((ref, "cpu"), (gpu, "cuda")):
        batch = _batch(dev)
        carry = model.initial_carry(batch)
        carry, loss, _, out, _ = model(carry, batch)
        loss.backward()
        grads = {n: p.grad.detach().float().cpu() for n, p in model.named_parameters() if p.grad is not None}
        outs.append((out["logits"].float().cpu(), loss.item(), grads))
    (l32, loss32, g32), (l16, loss16, g16) = outs
    scale = l32.abs().max().item()
    err = (l32 - l16).abs().max().item()
    print(f"bf16 vs fp32: max |logit diff| {err:.4f} (scale {scale:.2f}); loss {loss16:.4f} vs {loss32:.4f}")
    assert err <= max(0.15, 0.05 * scale)
    assert abs(loss16 - loss32) <= 0.02 * abs(loss32)
    for name, g in g32.items():
        if g.norm() == 0:
            continue
        cos = torch.nn.functional.cosine_similarity(g.flatten(), g16[name].flatten(), dim=0).item()
        assert cos >= 0.98, f"{name}: gradient cosine {cos:.4f}"


def test_pure_adam_atan2_same_on_cuda_and_cpu():
    torch.manual_seed(0)
    p0 = torch.randn(256, 64)
    grads = [torch.randn_like(p0) * 1e-3 for _ in range(3)]
    results = []
    for dev in ("cpu", "cuda"):
        p = torch.nn.Parameter(p0.clone().to(dev))
        opt = AdamATan2([p], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
        for g in grads:
            p.grad = g.clone().to(dev)
            opt.step()
        results.append(p.detach().cpu())
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=0)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().float().cpu() for n, p in model.named_parameters() if p.grad is not None}


def test_compiled_net_matches_eager_bf16():
    """What trm.train compiles by default on CUDA (the recurrent net) computes the same step."""
    import copy

    torch.manual_seed(0)
    eager = TRMWithLoss(TRM(_cfg("bfloat16"))).cuda().train()
    compiled = copy.deepcopy(eager)
    compiled.model.net.compile()
    res = []
    for m in (eager, compiled):
        batch = _batch("cuda")
        carry = m.initial_carry(batch)
        carry, loss, _, out, _ = m(carry, batch)
        loss.backward()
        res.append((out["logits"].float().cpu(), loss.item(), _grads(m)))
    (le, loss_e, ge), (lc, loss_c, gc) = res
    assert (le - lc).abs().max().item() <= max(0.15, 0.05 * le.abs().max().item())
    assert abs(loss_e - loss_c) <= 0.01 * abs(loss_e)
    for name, g in ge.items():
        if g.norm() > 0:
            cos = torch.nn.functional.cosine_similarity(g.flatten(), gc[name].flatten(), dim=0).item()
            assert cos >= 0.98, f"{name}: gradient cosine {cos:.4f}"


def test_fp16_loss_scaling_keeps_gradients_on_cuda():
    """float16 on the GPU (the T4 path): a loss small enough that fp16 activation gradients
    underflow keeps its gradients only with trm.optim.DynamicLossScale."""
    from trm.optim import DynamicLossScale

    torch.manual_seed(0)
    base = TRMWithLoss(TRM(_cfg("float16"))).cuda().train()
    tiny = 1e-6  # 1 / global batch, exaggerated: d loss / d logit ~ 1e-9, below fp16's 6e-8
    nonzero = []
    for scaler in (None, DynamicLossScale()):
        base.zero_grad(set_to_none=True)
        batch = _batch("cuda")
        carry = base.initial_carry(batch)
        carry, loss, *_ = base(carry, batch)
        (loss * tiny * (scaler.scale if scaler else 1.0)).backward()
        grads = [p.grad for p in base.parameters() if p.grad is not None]
        if scaler:
            assert scaler.unscale_(grads)
        nonzero.append(sum(int((g != 0).sum()) for g in grads) / sum(g.numel() for g in grads))
    print(f"fraction of non-zero gradient entries: unscaled {nonzero[0]:.3f}, scaled {nonzero[1]:.3f}")
    assert nonzero[1] > 0.5 and nonzero[1] > 2 * nonzero[0]


def _cudagraph_skips() -> int:
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


def test_graphed_step_matches_eager_bf16():
    """trm.model.CompiledStep on CUDA (torch.compile "reduce-overhead": the whole ACT step replayed
    as CUDA graphs, carries and batch in static buffers) computes eager's steps, every step a replay
    (no cudagraph skip), with the tolerances of the compiled-net test above."""
    import copy

    from trm.model import CompiledStep

    torch.manual_seed(0)
    eager = TRMWithLoss(TRM(_cfg("bfloat16"))).cuda().train()
    graphed = copy.deepcopy(eager)
    step = CompiledStep(graphed)
    skips = _cudagraph_skips()
    ce = cg = None
    for i in range(3):
        batch = _batch("cuda")
        batch["inputs"] = batch["inputs"].roll(i, dims=1)
        ce = ce or eager.initial_carry(batch)
        cg = cg or graphed.initial_carry(batch)
        ce, loss_e, _, out_e, _ = eager(ce, batch)
        cg, loss_g, _, out_g, _ = step(cg, batch)
        loss_e.backward()
        loss_g.backward()
        le, lg = out_e["logits"].float().cpu(), out_g["logits"].float().cpu()
        assert (le - lg).abs().max().item() <= max(0.15, 0.05 * le.abs().max().item())
        assert abs(loss_e.item() - loss_g.item()) <= 0.01 * abs(loss_e.item())
        assert cg.steps.tolist() == ce.steps.tolist()
        ge, gg = _grads(eager), _grads(graphed)
        for name, g in ge.items():
            if g.norm() > 0:
                cos = torch.nn.functional.cosine_similarity(g.flatten(), gg[name].flatten(), dim=0).item()
                assert cos >= 0.98, f"step {i} {name}: gradient cosine {cos:.4f}"
        for m in (eager, graphed):
            m.zero_grad(set_to_none=True)
            m.model.puzzle_emb.local_weights.grad = None
    assert _cudagraph_skips() == skips, "the step was not CUDA-graphed (why: TORCH_LOGS=perf_hints)"


def test_graphed_trainer_accumulates_on_cuda(tmp_path):
    """trm.engine with compile_step on CUDA and two micro-batches per step: gradients accumulate
    into .grad buffers outside the graphs (one the backward graph allocated would be overwritten
    by the next replay, and cudagraph trees raise), and the losses match the eager Trainer's."""
    import trm.distributed as D
    from dataset_builder.build import BuildConfig, build_dataset
    from trm.config import TrainConfig
    from trm.data import TrainSampler, load_split
    from trm.engine import build_trainer

    tasks = {f"{i:08x}": {"train": [{"input": [[i + 1, 0], [0, 1]], "output": [[2, 0], [0, i + 1]]}] * 3,
                          "test": [{"input": [[1, 1]]}]} for i in range(4)}
    build_dataset(BuildConfig(output_dir=tmp_path / "d", task_data={"train": tasks}, subsets=["train"],
                              test_set_name="none", num_aug=3, seed=0, quiet=True, force=True))
    split = load_split(tmp_path / "d", "train")
    ctx = D.DistContext(device=torch.device("cuda"))
    losses = []
    skips = _cudagraph_skips()
    for whole in (False, True):
        cfg = TrainConfig(arch=_cfg("bfloat16"), data_path=str(tmp_path / "d"), global_batch_size=8,
                          grad_accum_steps=2, epochs=50, eval_interval=50, evaluate=False, lr=1e-3,
                          lr_warmup_steps=1, ema=True, compile=whole, compile_step=whole, progress=False)
        t = build_trainer(cfg, ctx, split)
        batches = TrainSampler(split, 8, 50, 0).iter_iteration(TrainSampler.start_position(0))
        run = []
        for _ in range(3):
            t.train_step(next(batches)[0])
            run.append(t.pop_metrics()["train/loss"])
        losses.append(run)
    assert _cudagraph_skips() == skips
    for e, g in zip(*losses):
        assert abs(e - g) <= 0.02 * abs(e), losses


def test_graphed_evaluation_matches_eager_on_cuda(tmp_path):
    from dataset_builder.build import BuildConfig, build_dataset
    from trm.evaluate import predict

    tasks = {f"{i:08x}": {"train": [{"input": [[1, 0], [0, 1]], "output": [[2, 0], [0, 2]]}],
                          "test": [{"input": [[i % 9 + 1, 1], [0, 0]]}]} for i in range(3)}
    build_dataset(BuildConfig(output_dir=tmp_path / "d", task_data={"test": tasks}, subsets=["test"],
                              test_set_name="test", num_aug=4, seed=0, quiet=True, force=True))
    torch.manual_seed(0)
    import json

    n_ids = json.loads((tmp_path / "d" / "test" / "dataset.json").read_text())["num_puzzle_identifiers"]
    cfg = _cfg("float32")
    cfg.num_puzzle_identifiers = n_ids
    model = TRM(cfg).cuda()
    skips = _cudagraph_skips()
    graphed = predict(model, tmp_path / "d", global_batch_size=4, graph=True)
    assert _cudagraph_skips() == skips
    eager = predict(model, tmp_path / "d", global_batch_size=4)
    assert (graphed.steps == eager.steps).all()
    assert (graphed.preds == eager.preds).mean() >= 0.999
    q_graphed, q_eager = torch.from_numpy(graphed.q_halt), torch.from_numpy(eager.q_halt)
    torch.testing.assert_close(q_graphed, q_eager, atol=1e-3, rtol=0)
