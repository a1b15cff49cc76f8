"""AdamATan2, SparseSignSGD and the LR schedule vs the golden optimizer references and the formulas.

Run: .venv/bin/python -m pytest -q tests/test_optim.py -rP   (-rP prints the max errors)

The golden references (docs/fidelity.md#adamatan2-rule) apply one and three steps to step_0 from the SAVED
gradients (grads*.npz), AdamATan2 with the hyper-parameters of expected.json["optimizer"].
Tolerance atol 1e-7 (docs/fidelity.md#how-fidelity-is-proven).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

import trm.optim as optim_mod
from trm.checkpoint import kit_key_to_upstream, load_checkpoint
from trm.model import TRM, ModelConfig
from trm.optim import AdamATan2, SparseSignSGD, cosine_schedule_with_warmup_lr, make_adam_atan2

OPT_ATOL = 1e-7


def golden_setup(golden):
    d = golden / "model"
    cfg = json.loads((d / "config.json").read_text())
    hp = json.loads((d / "expected.json").read_text())["optimizer"]
    model, _ = load_checkpoint(d / "step_0", config=cfg["arch"])
    a, s = hp["adam_atan2"], hp["sparse_signsgd"]
    adam = AdamATan2(model.parameters(), lr=a["lr"], betas=tuple(a["betas"]), weight_decay=a["weight_decay"])
    sign = SparseSignSGD(model, lr=s["lr"], weight_decay=s["weight_decay"])
    return d, model, adam, sign


def apply_saved_grads(model, grads):
    for name, p in model.named_parameters():
        p.grad = torch.from_numpy(grads[kit_key_to_upstream(name)]).clone()
    emb = model.puzzle_emb
    g = torch.from_numpy(grads["puzzle_emb.local_weights.grad"]).clone()
    emb.local_weights = torch.zeros_like(g, requires_grad=True)  # what a train forward leaves behind
    emb.local_weights.grad = g
    emb.local_ids = torch.from_numpy(grads["puzzle_emb.local_ids"]).clone()


@pytest.mark.parametrize("n_steps", [1, 3])
def test_optimizers_match_golden(golden, n_steps):
    d, model, adam, sign = golden_setup(golden)
    files = ["grads.npz", "grads_call2.npz", "grads_call3.npz"][:n_steps]
    for f in files:
        apply_saved_grads(model, dict(np.load(d / f)))
        sign.step()  # upstream order: sparse SignSGD first, then AdamATan2
        adam.step()
        sign.zero_grad()
        adam.zero_grad()
    suffix = "step" if n_steps == 1 else "3_steps"
    want = torch.load(d / f"expected_after_{suffix}.pt")
    state = torch.load(d / f"optimizer_state_after_{suffix}.pt")
    errors = {}
    sd = model.state_dict()
    assert sorted(kit_key_to_upstream(k) for k in sd) == sorted(want)
    for key, value in sd.items():
        exp = want[kit_key_to_upstream(key)]
        assert value.dtype == exp.dtype
        torch.testing.assert_close(value, exp, atol=OPT_ATOL, rtol=0, msg=key)
        errors[key] = (value - exp).abs().max().item()
    for name, p in model.named_parameters():
        st, up = adam.state[p], kit_key_to_upstream(name)
        assert st["step"].dtype == torch.float32 and st["step"].item() == state["step"] == n_steps
        for k in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(st[k], state[k][up], atol=OPT_ATOL, rtol=0, msg=f"{k} {name}")
            errors[f"{k} {name}"] = (st[k] - state[k][up]).abs().max().item()
    worst = dict(sorted(errors.items(), key=lambda kv: -kv[1])[:6])
    print(f"largest optimizer errors after {n_steps} step(s):", json.dumps(worst, indent=1))


def reference_adam_atan2(p, grads, lr, b1, b2, wd):
    """Float64 transcription of the kernel rule, for random-data checks."""
    p, m, v = (p.double().clone(), torch.zeros_like(p, dtype=torch.float64),
               torch.zeros_like(p, dtype=torch.float64))
    for t, g in enumerate(grads, start=1):
        g = g.double()
        p *= 1 - lr * wd
        m += (1 - b1) * (g - m)
        v += (1 - b2) * (g * g - v)
        p -= lr / (1 - b1**t) * torch.atan2(m, v.sqrt() / math.sqrt(1 - b2**t))
    return p


def test_adam_atan2_formula_and_lr_zero():
    torch.manual_seed(0)
    p0 = torch.randn(50, 7)
    grads = [torch.randn(50, 7) * 1e-3 for _ in range(5)]
    grads[0][0, 0] = 0.0  # atan2(0, 0) = 0: only decayed
    p = torch.nn.Parameter(p0.clone())
    opt = AdamATan2([p], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    torch.testing.assert_close(p.detach().double(), reference_adam_atan2(p0, grads, 1e-2, 0.9, 0.95, 0.1),
                               atol=1e-6, rtol=0)
    # lr = 0 (TRM constructs with lr 0 and lets the schedule set it): nothing moves, moments still update
    q = torch.nn.Parameter(p0.clone())
    opt = AdamATan2([q], lr=0.0, betas=(0.9, 0.95), weight_decay=0.1)
    q.grad = grads[1].clone()
    opt.step()
    assert torch.equal(q.detach(), p0) and opt.state[q]["exp_avg"].abs().sum() > 0
    with pytest.raises(ValueError):
        AdamATan2([q], lr=-1.0)


def test_adam_atan2_state_dict_round_trip():
    p = torch.nn.Parameter(torch.randn(4, 3))
    opt = AdamATan2([p], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    p.grad = torch.randn(4, 3)
    opt.step()
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = AdamATan2([q], lr=1e-3)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # as if read back from a file
    g = torch.randn(4, 3)
    p.grad, q.grad = g.clone(), g.clone()
    opt.step()
    opt2.step()
    assert torch.equal(p, q) and opt2.param_groups[0]["betas"] == (0.9, 0.95)


def tiny_model(rows=6, dim=4):
    cfg = ModelConfig(hidden_size=8, num_heads=2, puzzle_emb_ndim=dim, puzzle_emb_len=1, seq_len=4,
                      num_puzzle_identifiers=rows, forward_dtype="float32")
    model = TRM(cfg)
    model.puzzle_emb.weights.normal_()
    return model


def test_sparse_signsgd_rule():
    model = tiny_model()
    W0 = model.puzzle_emb.weights.clone()
    opt = SparseSignSGD(model.puzzle_emb, lr=0.5, weight_decay=0.2)
    ids = torch.tensor([3, 1, 3], dtype=torch.int32)
    grad = torch.tensor([[1.0, -1.0, 0.0, 2.0], [0.5, 0.5, -0.5, 0.0], [-2.0, 0.5, 0.0, -1.0]])
    model.puzzle_emb.local_weights = torch.zeros(3, 4, requires_grad=True)
    model.puzzle_emb.local_weights.grad = grad
    model.puzzle_emb.local_ids = ids
    opt.step()
    W = model.puzzle_emb.weights
    s3 = torch.tensor([-1.0, -1.0, 0.0, 1.0])  # sign of the summed duplicate rows
    torch.testing.assert_close(W[3], W0[3] * 0.9 - 0.5 * s3)
    torch.testing.assert_close(W[1], W0[1] * 0.9 - 0.5 * grad[1].sign())
    untouched = [0, 2, 4, 5]
    assert torch.equal(W[untouched], W0[untouched])  # no decay on rows not in the batch
    opt.zero_grad()
    assert model.puzzle_emb.local_weights.grad is None
    opt.step()  # no grad: a no-op
    # lr via param_groups (what a scheduler sets) and a state_dict round trip
    opt.param_groups[0]["lr"] = 0.01
    opt2 = SparseSignSGD(model.puzzle_emb, lr=1.0)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.param_groups[0]["lr"] == 0.01 and opt2.param_groups[0]["weight_decay"] == 0.2


def test_sparse_signsgd_gathers_across_ranks(monkeypatch):
    """world_size 2 simulated: the other rank's rows must be updated too."""
    model = tiny_model()
    W0 = model.puzzle_emb.weights.clone()
    other_ids, other_grad = torch.tensor([5, 2], dtype=torch.int32), torch.ones(2, 4)
    monkeypatch.setattr(optim_mod.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(optim_mod.dist, "get_world_size", lambda group=None: 2)

    def fake_all_gather(out, local, group=None):
        other = other_ids if local.dtype == torch.int32 else other_grad
        out.copy_(torch.cat([local, other]))

    monkeypatch.setattr(optim_mod.dist, "all_gather_into_tensor", fake_all_gather)
    opt = SparseSignSGD(model, lr=0.1, weight_decay=0.0)
    model.puzzle_emb.local_weights = torch.zeros(2, 4, requires_grad=True)
    model.puzzle_emb.local_weights.grad = -torch.ones(2, 4)
    model.puzzle_emb.local_ids = torch.tensor([1, 2], dtype=torch.int32)
    opt.step()
    W = model.puzzle_emb.weights
    torch.testing.assert_close(W[1], W0[1] + 0.1)
    torch.testing.assert_close(W[2], W0[2])  # -1 + 1 = 0 -> sign 0
    torch.testing.assert_close(W[5], W0[5] - 0.1)


def test_cosine_schedule():
    lr = cosine_schedule_with_warmup_lr
    assert lr(1, 1e-4, 2000, 10000, 1.0) == pytest.approx(1e-4 / 2000)  # first update
    assert lr(2000, 1e-4, 2000, 10000, 1.0) == pytest.approx(1e-4)
    assert lr(9000, 1e-4, 2000, 10000, 1.0) == pytest.approx(1e-4)  # min_ratio 1: constant
    assert lr(6000, 1.0, 2000, 10000, 0.0) == pytest.approx(0.5)  # half-way down the cosine
    assert lr(10000, 1.0, 2000, 10000, 0.1) == pytest.approx(0.1)


def test_make_adam_atan2_falls_back_on_cpu():
    p = torch.nn.Parameter(torch.zeros(3))
    assert type(make_adam_atan2([p], lr=0.0)) is AdamATan2


def test_muon_params_are_the_blocks_matrices():
    model = TRM(ModelConfig(hidden_size=8, num_heads=2, n_layers=2, puzzle_emb_ndim=4, puzzle_emb_len=1,
                            seq_len=4, num_puzzle_identifiers=3, forward_dtype="float32"))
    chosen = {id(p) for p in optim_mod.muon_params(model)}
    names = {n for n, p in model.named_parameters() if id(p) in chosen}
    blocks = {n for n, p in model.named_parameters() if n.startswith("net.blocks.")}
    assert names == blocks and all(p.ndim == 2 for p in optim_mod.muon_params(model))
    assert len(names) == 4 * model.config.n_layers  # qkv, o, gate_up, down per block
    # the rest (embeddings, heads, q bias) stays on AdamATan2; the puzzle table is a buffer (SignSGD)
    assert {"embed_tokens.weight", "lm_head.weight", "q_head.weight", "q_head.bias"} <= (
        {n for n, _ in model.named_parameters()} - names)


def test_muon_step_is_an_orthogonalised_update_at_adam_rms():
    """One step, no momentum history (nesterov on a zero buffer: the update is g's direction), no
    decay: the change is lr * 0.2 * sqrt(max(A, B)) times a near-orthogonal matrix (singular values
    near 1 after 5 Newton-Schulz steps), whatever the gradient's scale; RMS ~0.2 * lr."""
    torch.manual_seed(0)
    for shape in [(48, 16), (16, 48)]:
        changes = []
        for scale in (1e-6, 1.0):
            p = torch.nn.Parameter(torch.zeros(shape))
            opt = optim_mod.make_muon([p], lr=1e-2, momentum=0.95, weight_decay=0.0)
            torch.manual_seed(1)
            p.grad = torch.randn(shape) * scale
            opt.step()
            changes.append(-p.detach() / (1e-2 * 0.2 * math.sqrt(max(shape))))
        sv = torch.linalg.svdvals(changes[1])
        assert sv.min() > 0.5 and sv.max() < 1.5, sv
        torch.testing.assert_close(changes[0], changes[1], atol=2e-2, rtol=0)  # scale-free
        rms = (changes[1] * 1e-2 * 0.2 * math.sqrt(max(shape))).pow(2).mean().sqrt().item()
        assert 0.1 * 1e-2 < rms < 0.3 * 1e-2
    # decoupled weight decay: p *= 1 - lr*wd; lr 0 moves nothing (the engine's schedule sets lr)
    p = torch.nn.Parameter(torch.ones(4, 4))
    opt = optim_mod.make_muon([p], lr=0.0, momentum=0.95, weight_decay=0.1)
    p.grad = torch.randn(4, 4)
    opt.step()
    assert torch.equal(p.detach(), torch.ones(4, 4)) and opt.state[p]["momentum_buffer"].abs().sum() > 0


def test_muon_state_dict_round_trip():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(6, 4))
    opt = optim_mod.make_muon([p], lr=1e-2, momentum=0.9, weight_decay=0.1)
    p.grad = torch.randn(6, 4)
    opt.step()
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = optim_mod.make_muon([q], lr=1.0, momentum=0.5, weight_decay=0.0)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # momentum buffer and hyper-parameters
    g = torch.randn(6, 4)
    p.grad, q.grad = g.clone(), g.clone()
    opt.step()
    opt2.step()
    assert torch.equal(p, q) and opt2.param_groups[0]["momentum"] == 0.9


def test_muon_missing_is_one_clear_error(monkeypatch):
    monkeypatch.delattr(torch.optim, "Muon")
    with pytest.raises(optim_mod.UserError, match="torch >= 2.9.*--optimizer adam_atan2"):
        optim_mod.make_muon([torch.nn.Parameter(torch.zeros(2, 2))], lr=0.0, momentum=0.95, weight_decay=0.1)


def _fused_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import adam_atan2  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.get_device_capability()[0] >= 8


@pytest.mark.cuda
@pytest.mark.skipif(not _fused_available(), reason="needs CUDA (cc >= 8.0) and the adam_atan2 package")
def test_fused_adam_atan2_agrees_with_pure():
    torch.manual_seed(0)
    p0 = torch.randn(1000, 64, device="cuda")
    grads = [torch.randn_like(p0) * 1e-3 for _ in range(3)]
    a, b = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(p0.clone())
    fused = make_adam_atan2([a], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    pure = AdamATan2([b], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    assert type(fused) is not AdamATan2
    for g in grads:
        a.grad, b.grad = g.clone(), g.clone()
        fused.step()
        pure.step()
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
