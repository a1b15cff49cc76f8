"""pick_dtype's rule (T4 never gets bf16) with torch.cuda mocked, and a low-precision forward on CPU.

Run: .venv/bin/python -m pytest -q tests/test_dtype_policy.py
"""

from __future__ import annotations

import warnings

import pytest
import torch

import trm.model as model_mod
from trm.model import TRM, ModelConfig, TRMWithLoss, pick_dtype


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend to be on a GPU of the given compute capability; is_bf16_supported lies like on a T4."""

    def install(cc):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: cc)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)

    return install


def test_t4_never_gets_bf16(fake_gpu):
    fake_gpu((7, 5))
    assert pick_dtype("cuda") == torch.float16
    assert pick_dtype("cuda:0", "auto") == torch.float16
    with pytest.warns(UserWarning, match="float16"):
        assert pick_dtype("cuda", "bfloat16") == torch.float16
    assert pick_dtype("cuda", "float32") == torch.float32
    assert pick_dtype(torch.device("cuda"), torch.float16) == torch.float16


def test_ampere_and_newer_get_bf16(fake_gpu):
    fake_gpu((8, 9))  # L4
    assert pick_dtype("cuda") == torch.bfloat16
    assert pick_dtype("cuda", "bf16") == torch.bfloat16
    assert pick_dtype("cuda", "fp32") == torch.float32
    assert pick_dtype("cuda", "fp16") == torch.float16


def test_cpu_is_float32_unless_asked(monkeypatch):
    assert pick_dtype("cpu") == torch.float32
    assert pick_dtype("cpu", "auto") == torch.float32
    monkeypatch.setattr(model_mod, "_cpu_has_native_bf16", lambda: True)  # AMX
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pick_dtype("cpu", "bfloat16") == torch.bfloat16
    # AVX2 only: honoured, with a warning
    monkeypatch.setattr(model_mod, "_cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="slower"):
        assert pick_dtype("cpu", "bfloat16") == torch.bfloat16
    with pytest.raises(ValueError):
        pick_dtype("cpu", "int8")


def test_bf16_forward_keeps_fp32_masters():
    torch.manual_seed(0)
    cfg = ModelConfig(hidden_size=32, num_heads=2, expansion=2.0, n_outer_cycles=2, n_latent_steps=2,
                      halt_max_steps=2, puzzle_emb_ndim=32, puzzle_emb_len=2, num_puzzle_identifiers=4,
                      seq_len=16, forward_dtype="bfloat16")
    model = TRM(cfg)
    assert model.H_init.dtype == torch.bfloat16 and model.lm_head.weight.dtype == torch.float32
    head = TRMWithLoss(model).train()
    b = {"inputs": torch.randint(0, 12, (2, 16), dtype=torch.int32),
         "labels": torch.randint(0, 12, (2, 16), dtype=torch.int32),
         "puzzle_identifiers": torch.tensor([1, 3], dtype=torch.int32)}
    carry, loss, _, out, _ = head(head.initial_carry(b), b)
    loss.backward()
    assert carry.z_H.dtype == torch.bfloat16 and out["logits"].dtype == torch.bfloat16
    assert loss.dtype == torch.float64 and torch.isfinite(loss)
    assert model.lm_head.weight.grad.dtype == torch.float32
    assert model.puzzle_emb.local_weights.grad.dtype == torch.float32
    # the same weights in fp32 agree to bf16 precision
    ref = TRM(ModelConfig(**{**cfg.to_dict(), "forward_dtype": "float32"}))
    ref.load_state_dict(model.state_dict())
    ref.train()
    _, out32 = ref(ref.initial_carry(b), b)
    assert (out["logits"].float() - out32["logits"]).abs().max() < 0.25
