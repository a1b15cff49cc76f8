"""float16 training (the T4 path) keeps its gradients with dynamic loss scaling (trm.optim.DynamicLossScale).

fp16 represents nothing below ~6e-8: a loss divided by a large global batch gives activation
gradients that flush to zero in the fp16 backward, so the fp32 master weights get no update. The
scaler multiplies the loss by 2^16 before backward and divides the gradients after. CPU, fp16.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from trm import distributed as D
from trm.config import TrainConfig
from trm.data import TrainSampler, load_split
from trm.engine import Trainer
from trm.model import TRM, ModelConfig, TRMWithLoss
from trm.optim import DynamicLossScale


def _cfg(dtype: str) -> ModelConfig:
    return ModelConfig(hidden_size=64, num_heads=2, n_layers=1, n_outer_cycles=1, n_latent_steps=2,
                       halt_max_steps=2, expansion=2.0, puzzle_emb_ndim=64, num_puzzle_identifiers=8,
                       forward_dtype=dtype)


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(2, 12, (4, 900), generator=g, dtype=torch.int32)
    labels[:, 300:] = -100
    return {"inputs": torch.randint(2, 12, (4, 900), generator=g, dtype=torch.int32), "labels": labels,
            "puzzle_identifiers": torch.tensor([1, 2, 3, 2], dtype=torch.int32)}


def _grad_fraction(head: TRMWithLoss, factor: float, scaler: DynamicLossScale | None) -> tuple[float, list]:
    head.zero_grad(set_to_none=True)
    batch = _batch()
    carry = head.initial_carry(batch)
    carry, loss, *_ = head(carry, batch)
    (loss * factor * (scaler.scale if scaler else 1.0)).backward()
    grads = [p.grad for p in head.parameters() if p.grad is not None]
    if scaler:
        assert scaler.unscale_(grads)
    frac = sum(int((g != 0).sum()) for g in grads) / sum(g.numel() for g in head.parameters())
    return frac, [g.clone() for g in grads]


def test_scaled_fp16_keeps_gradients_the_unscaled_one_loses():
    torch.manual_seed(0)
    head = TRMWithLoss(TRM(_cfg("float16"))).train()
    factor = 1e-6  # d loss / d logit ~ 1e-9: under fp16's smallest subnormal (6e-8)
    lost, _ = _grad_fraction(head, factor, None)
    kept, scaled = _grad_fraction(head, factor, DynamicLossScale())
    ref32 = TRMWithLoss(TRM(_cfg("float32"))).train()
    ref32.load_state_dict({k: v.float() for k, v in head.state_dict().items()})
    ref32.model.H_init.data, ref32.model.L_init.data = head.model.H_init.float(), head.model.L_init.float()
    _, exact = _grad_fraction(ref32, factor, None)
    print(f"non-zero gradient entries: fp16 unscaled {lost:.3f}, fp16 scaled {kept:.3f}")
    assert lost < 0.1 and kept > 0.5
    cos = [torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()
           for a, b in zip(scaled, exact) if b.norm() > 0]
    assert min(cos) > 0.9, cos  # the scaled fp16 gradients point where the fp32 ones do


def test_scale_rule_matches_gradscaler_defaults():
    s = DynamicLossScale(growth_interval=3)
    assert s.scale == 2.0**16
    grads = [torch.tensor([1.0, float("inf")])]
    assert not s.unscale_(grads)
    s.update(False)
    assert s.scale == 2.0**15 and s.skipped == 1
    for _ in range(3):
        assert s.unscale_([torch.ones(2)])
        s.update(True)
    assert s.scale == 2.0**16 and s.good_steps == 0
    s2 = DynamicLossScale()
    s2.load_state_dict(s.state_dict())
    assert s2.state_dict() == s.state_dict()


@pytest.fixture
def tiny_split(tmp_path):
    from dataset_builder.build import BuildConfig, build_dataset

    task = {"train": [{"input": [[1, 2], [3, 4]], "output": [[4, 3], [2, 1]]}] * 3,
            "test": [{"input": [[5, 6], [7, 8]], "output": [[8, 7], [6, 5]]}]}
    build_dataset(BuildConfig(output_dir=tmp_path / "d", task_data={"t": {"a": task, "b": task}},
                              subsets=["t"], test_set_name="t", num_aug=3, quiet=True, force=True))
    return load_split(tmp_path / "d", "train")


def test_trainer_fp16_scales_skips_overflow_and_logs(tiny_split):
    meta = tiny_split.meta
    arch = dataclasses.replace(_cfg("float16"), vocab_size=meta["vocab_size"], seq_len=meta["seq_len"],
                               num_puzzle_identifiers=meta["num_puzzle_identifiers"])
    cfg = TrainConfig(arch=arch, data_path="unused", global_batch_size=4, epochs=100, eval_interval=100,
                      lr_warmup_steps=1, device="cpu", progress=False, ema=False)
    torch.manual_seed(0)
    tr = Trainer(cfg, D.DistContext(), tiny_split)
    assert tr.scaler is not None
    batches = iter(TrainSampler(tiny_split, 4, 100, 0).iter_iteration(tr.position))
    tr.train_step(next(batches)[0])
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    table = tr.model.puzzle_emb.weights.clone()
    tr.scaler.scale = 2.0**100  # forces an overflow in the fp16 backward: the update must be skipped
    skipped = tr.scaler.skipped
    tr.train_step(next(batches)[0])
    assert tr.scaler.skipped == skipped + 1 and tr.scaler.scale == 2.0**99
    assert all(torch.equal(before[n], p) for n, p in tr.model.named_parameters())
    assert torch.equal(table, tr.model.puzzle_emb.weights)
    tr.scaler.scale = 2.0**10
    tr.train_step(next(batches)[0])
    assert not all(torch.equal(before[n], p) for n, p in tr.model.named_parameters())
    m = tr.pop_metrics()
    assert m["train/loss_scale"] == 2.0**10 and m["train/skipped_steps"] == tr.scaler.skipped
    assert np.isfinite(m["train/loss"])
    fp32 = Trainer(dataclasses.replace(cfg, arch=dataclasses.replace(arch, forward_dtype="float32")),
                   D.DistContext(), tiny_split)
    assert fp32.scaler is None  # bf16 / fp32 run exactly as upstream
