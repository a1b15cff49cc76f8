"""TRM forward/backward against upstream's golden outputs, plus model-level invariants.

Run: .venv/bin/python -m pytest -q tests/test_model_golden.py -rP   (-rP prints the max errors)

Golden data: $TRM_GOLDEN_DIR/model (see golden/README.md). Everything is read from its
config.json / expected.json, so another golden set of the same structure works unchanged.
Tolerances (docs/fidelity.md#how-fidelity-is-proven): logits / z / q atol+rtol 1e-4, losses rtol 1e-5,
gradients
1e-5 (absolute, or relative to the tensor's max |value|); halting flags, steps, ids and counts exact.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trm.checkpoint import kit_key_to_upstream, load_checkpoint, upstream_key_to_kit
from trm.model import TRM, ModelConfig, TRMWithLoss, count_parameters

ATOL = RTOL = 1e-4  # logits, z, q
LOSS_RTOL = 1e-5
GRAD_TOL = 1e-5
COUNT_METRICS = ("count", "exact_accuracy", "q_halt_accuracy", "steps")


class Gold:
    def __init__(self, root):
        self.dir = root / "model"
        self.config = json.loads((self.dir / "config.json").read_text())
        self.json = json.loads((self.dir / "expected.json").read_text())
        self.npz = dict(np.load(self.dir / "expected.npz"))
        b = np.load(self.dir / "batch.npz")
        names = ("inputs", "labels", "puzzle_identifiers")
        self.batches = [{k: torch.from_numpy(b[p + k]) for k in names} for p in ("", "call2_", "call3_")]
        self.grads = [dict(np.load(self.dir / f))
                      for f in ("grads.npz", "grads_call2.npz", "grads_call3.npz")]

    def model(self) -> TRM:
        arch = dict(self.config["arch"], loss={"loss_type": self.config["loss_type"]})
        model, _ = load_checkpoint(self.dir / "step_0", config=arch)
        return model


@pytest.fixture(scope="module")
def gold(golden):
    return Gold(golden)


def max_err(actual: torch.Tensor, expected) -> float:
    return (actual.detach().double() - torch.as_tensor(np.asarray(expected)).double()).abs().max().item()


def assert_close(name, actual, expected, atol=ATOL, rtol=RTOL, errors=None):
    expected_t = torch.as_tensor(np.asarray(expected))
    torch.testing.assert_close(actual.detach().to(expected_t.dtype), expected_t, atol=atol, rtol=rtol,
                               msg=name)
    if errors is not None:
        errors[name] = max(errors.get(name, 0.0), max_err(actual, expected))


def unstable_positions(logits: np.ndarray, gap: float = 1e-4) -> np.ndarray:
    """Cells whose top-2 expected logits are closer than `gap` (argmax may legitimately differ)."""
    top2 = np.sort(logits, axis=-1)[..., -2:]
    return (top2[..., 1] - top2[..., 0]) < gap


def check_preds(name, preds, logits):
    exp = np.asarray(logits).argmax(-1)
    diff = (preds.numpy() != exp) & ~unstable_positions(np.asarray(logits))
    assert not diff.any(), f"{name}: argmax differs at {np.argwhere(diff)[:5].tolist()}"


def check_scalars(where, loss, metrics, exp, errors):
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(exp["loss"]["value"], rel=LOSS_RTOL), f"{where} loss"
    errors[f"{where} loss (rel)"] = abs(loss.item() / exp["loss"]["value"] - 1)
    for key, e in exp["metrics"].items():
        got = metrics[key]
        if key in COUNT_METRICS:
            assert got.item() == e["value"], f"{where} metric {key}"
        else:
            assert got.item() == pytest.approx(e["value"], rel=LOSS_RTOL, abs=1e-6), f"{where} metric {key}"
        assert str(got.dtype).removeprefix("torch.") == e["dtype"], f"{where} {key} dtype"


def test_config_and_state_dict_layout(gold):
    model = gold.model()
    assert count_parameters(model) == gold.json["num_parameters"]
    want = gold.json["state_dict_keys"]
    sd = model.state_dict()
    assert sorted(kit_key_to_upstream(k) for k in sd) == sorted(want)
    for key, info in want.items():
        t = sd[upstream_key_to_kit(key)]
        assert list(t.shape) == info["shape"] and str(t.dtype).removeprefix("torch.") == info["dtype"], key
    order = [kit_key_to_upstream(n) for n, _ in model.named_parameters()]
    assert order == gold.json["parameter_keys_in_optimizer_order"]
    cfg = ModelConfig.from_upstream(gold.config["arch"])
    assert ModelConfig.from_upstream(cfg.to_upstream()) == cfg


def test_eval_run(gold):
    errors = {}
    head = TRMWithLoss(gold.model()).eval()
    batch, n = gold.batches[0], gold.config["arch"]["halt_max_steps"]
    with torch.no_grad():
        carry = head.initial_carry(batch)
        for k, exp in enumerate(gold.json["eval"]):
            carry, loss, metrics, out, all_finish = head(carry, batch)
            assert_close(f"eval_logits[{k}]", out["logits"], gold.npz["eval_logits"][k], errors=errors)
            assert_close("eval_q_halt", out["q_halt_logits"], gold.npz["eval_q_halt_logits"][k],
                         errors=errors)
            assert_close("eval_q_continue", out["q_continue_logits"], gold.npz["eval_q_continue_logits"][k],
                         errors=errors)
            check_preds(f"eval preds step {k}", out["preds"], gold.npz["eval_logits"][k])
            check_scalars(f"eval step {k + 1}", loss, metrics, exp, errors)
            assert carry.halted.tolist() == exp["halted"] and carry.steps.tolist() == exp["steps"]
            assert bool(all_finish) == exp["all_finish"] == (k == n - 1)
    check_preds("eval_preds", out["preds"], gold.npz["eval_logits"][-1])
    assert_close("eval_final_z_H", carry.z_H, gold.npz["eval_final_z_H"], errors=errors)
    assert_close("eval_final_z_L", carry.z_L, gold.npz["eval_final_z_L"], errors=errors)
    print("largest eval errors:", json.dumps(errors, indent=1))


def test_train_calls_and_gradients(gold):
    errors = {}
    model = gold.model()
    head = TRMWithLoss(model).train()
    carry = head.initial_carry(gold.batches[0])
    for c, (batch, exp, grads) in enumerate(zip(gold.batches, gold.json["train"], gold.grads)):
        model.zero_grad(set_to_none=True)
        if model.puzzle_emb.local_weights is not None:
            model.puzzle_emb.local_weights.grad = None
        assert carry.halted.tolist() == exp["rows_halted_before_call (reset + loaded new data)"]
        carry, loss, metrics, out, all_finish = head(carry, batch)
        loss.backward()
        tag = f"train_call{c + 1}"
        check_scalars(tag, loss, metrics, exp, errors)
        assert loss.item() == pytest.approx(float(gold.npz[f"{tag}_loss"]), rel=LOSS_RTOL)
        assert carry.halted.tolist() == gold.npz[f"{tag}_halted_after"].tolist() == exp["halted_after_call"]
        assert carry.steps.tolist() == gold.npz[f"{tag}_steps_after"].tolist()
        assert (carry.current_data["puzzle_identifiers"].tolist()
                == gold.npz[f"{tag}_current_puzzle_identifiers"].tolist())
        assert bool(all_finish) == exp["all_finish"]
        assert_close("train_logits", out["logits"], gold.npz["train_logits"][c], errors=errors)
        assert_close("train_q_halt", out["q_halt_logits"], gold.npz["train_q_halt_logits"][c], errors=errors)
        assert_close("train_q_continue", out["q_continue_logits"], gold.npz["train_q_continue_logits"][c],
                     errors=errors)
        check_preds(f"{tag} preds", out["preds"], gold.npz["train_logits"][c])
        for name, p in model.named_parameters():
            g = grads[kit_key_to_upstream(name)]
            tol = GRAD_TOL * max(1.0, float(np.abs(g).max()))
            assert_close(f"grad {name}", p.grad, g, atol=tol, rtol=0, errors=errors)
        emb = model.puzzle_emb
        assert emb.local_ids.tolist() == grads["puzzle_emb.local_ids"].tolist()
        assert_close("grad puzzle_emb.local_weights", emb.local_weights.grad,
                     grads["puzzle_emb.local_weights.grad"], atol=GRAD_TOL, rtol=0, errors=errors)
    assert_close("train_final_z_H", carry.z_H, gold.npz["train_final_z_H"], errors=errors)
    assert_close("train_final_z_L", carry.z_L, gold.npz["train_final_z_L"], errors=errors)
    worst = {k: v for k, v in sorted(errors.items(), key=lambda kv: -kv[1])[:12]}
    print("largest train errors:", json.dumps(worst, indent=1))


def test_train_step_one_equals_eval_step_one(gold):
    """Both start from the reset carry; the train-mode table path is a copy of the same rows."""
    model = gold.model()
    batch = gold.batches[0]
    with torch.no_grad():
        _, out_eval = model.eval()(model.initial_carry(batch), batch)
    _, out_train = model.train()(model.initial_carry(batch), batch)
    torch.testing.assert_close(out_train["logits"].detach(), out_eval["logits"], atol=1e-6, rtol=0)


# ---- invariants that need no golden data (tiny configs, seq_len 16) -------------------------------


def tiny_config(**kw) -> ModelConfig:
    base = dict(hidden_size=32, num_heads=2, expansion=2.0, n_outer_cycles=2, n_latent_steps=2,
                halt_max_steps=3, puzzle_emb_ndim=32, puzzle_emb_len=4, num_puzzle_identifiers=6, seq_len=16,
                forward_dtype="float32", halt_exploration_prob=0.0)
    return ModelConfig(**(base | kw))


def tiny_batch(B=3, seq_len=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, 12, (B, seq_len), generator=g, dtype=torch.int32)
    labels = torch.randint(0, 12, (B, seq_len), generator=g, dtype=torch.int32)
    labels[:, -3:] = -100
    return {"inputs": inputs, "labels": labels,
            "puzzle_identifiers": torch.arange(1, B + 1, dtype=torch.int32)}


@pytest.mark.parametrize("kw", [dict(pos_encodings="learned"), dict(pos_encodings="none", mlp_t=True),
                                dict(puzzle_emb_ndim=0), dict(puzzle_emb_len=0, puzzle_emb_ndim=48),
                                dict(loss_type="softmax_cross_entropy")])
def test_variants_forward_backward(kw):
    torch.manual_seed(0)
    model = TRM(tiny_config(**kw))
    head = TRMWithLoss(model).train()
    batch = tiny_batch()
    carry, loss, metrics, out, _ = head(head.initial_carry(batch), batch)
    loss.backward()
    assert torch.isfinite(loss) and out["logits"].shape == (3, 16, 12)
    assert carry.z_H.shape == (3, model.prefix_len + 16, 32)
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("q_head"))


def test_act_continue_target_and_halting():
    torch.manual_seed(0)
    model = TRM(tiny_config(no_act_continue=False))
    head = TRMWithLoss(model).train()
    batch = tiny_batch()
    # fresh q_head: both logits -5, so q_halt > q_continue is False and nobody halts early
    carry, loss, metrics, out, _ = head(head.initial_carry(batch), batch)
    assert not carry.halted.any() and carry.steps.tolist() == [1, 1, 1]
    assert "q_continue_loss" in metrics
    with torch.no_grad():
        model.q_head.weight.normal_(0, 0.5)
    carry, loss, metrics, out, _ = head(head.initial_carry(batch), batch)
    loss.backward()
    assert model.q_head.bias.grad[1] != 0  # q_continue is trained toward the bootstrapped target
    q = out["q_halt_logits"] > out["q_continue_logits"]
    assert carry.halted.tolist() == q.tolist()


def test_only_halted_rows_take_new_data():
    torch.manual_seed(0)
    model = TRM(tiny_config()).train()
    a, b = tiny_batch(seed=1), tiny_batch(seed=2)
    carry, _ = model(model.initial_carry(a), a)
    carry.halted = torch.tensor([True, False, True])
    z_before = carry.z_H.clone()
    new, _ = model(carry, b)
    for k in a:
        assert torch.equal(new.current_data[k][0], b[k][0]) and torch.equal(new.current_data[k][2], b[k][2])
        assert torch.equal(new.current_data[k][1], a[k][1])
    assert new.steps.tolist() == [1, 2, 1]
    assert not torch.equal(new.z_H[1], z_before[1])


def test_eval_runs_exactly_halt_max_steps():
    torch.manual_seed(0)
    model = TRM(tiny_config()).eval()
    with torch.no_grad():
        model.q_head.bias.fill_(5.0)  # would halt at once in training
        batch = tiny_batch()
        carry = model.initial_carry(batch)
        for step in range(1, 4):
            carry, _ = model(carry, batch)
            assert carry.halted.all() == (step == 3)


def test_puzzle_batch_size_change_is_a_clear_error():
    model = TRM(tiny_config()).train()
    big, small = tiny_batch(B=3), tiny_batch(B=2)
    model(model.initial_carry(big), big)
    with pytest.raises(ValueError, match="batch size changed"):
        model(model.initial_carry(small), small)
    model.puzzle_emb.release_local()
    model(model.initial_carry(small), small)
