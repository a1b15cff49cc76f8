"""The whole-step compiled (CUDA-graphed on CUDA) ACT step, trm.model.CompiledStep, against eager on CPU.

    .venv/bin/pytest -q tests/test_compiled_step.py            # the slow tier compiles with inductor

The training step (TRMWithLoss: bookkeeping, net, loss, backward), the Trainer that graphs it
(trm.engine: static carries, .grad kept outside the graphs, micro-batch slots) and the evaluation
(trm.evaluate.predict with graph=True, and its fallback) must compute what eager computes. The fast
tests trace with backend "aot_eager" (dynamo + AOTAutograd, no code generation: the wrapper and
the whole-graph tracing, bit for bit); the slow ones compile with inductor in mode
"reduce-overhead" as on CUDA (on CPU without graphs) within the golden tolerances
(tests/test_model_golden.py). The graphs themselves are checked on a GPU (tests/test_cuda.py).
"""

from __future__ import annotations

import copy

import pytest
import torch

from trm.model import TRM, CompiledStep, ModelConfig, TRMWithLoss

ATOL = 1e-4  # logits, z (tests/test_model_golden.py)
LOSS_RTOL = 1e-5
GRAD_TOL = 1e-5  # relative to the tensor's max |value|
# halt_max_steps 3 and a random q head (seed 1): rows halt at different steps, so resets and the
# data swap of halted rows run inside the graph (asserted below)
CFG = dict(hidden_size=16, num_heads=2, expansion=2.0, n_layers=1, n_outer_cycles=2, n_latent_steps=1,
           halt_max_steps=3, halt_exploration_prob=0.0, puzzle_emb_ndim=16, puzzle_emb_len=1,
           forward_dtype="float32", num_puzzle_identifiers=7)


def _model() -> TRMWithLoss:
    torch.manual_seed(1)
    head = TRMWithLoss(TRM(ModelConfig(**CFG))).train()
    with torch.no_grad():
        head.model.q_head.weight.normal_(0, 0.1)
        head.model.q_head.bias.zero_()
        head.model.puzzle_emb.weights.normal_()
    return head


def _batch(i: int, rows: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(i)
    labels = torch.randint(0, 12, (rows, 900), generator=g, dtype=torch.int32)
    labels[:, 400:] = -100
    return {"inputs": torch.randint(0, 12, (rows, 900), generator=g, dtype=torch.int32), "labels": labels,
            "puzzle_identifiers": torch.randint(1, 7, (rows,), generator=g, dtype=torch.int32)}


def _close_grads(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        tol = GRAD_TOL * max(1.0, p.grad.abs().max().item())
        torch.testing.assert_close(q.grad, p.grad, atol=tol, rtol=0, msg=name)


def _training_steps_match(backend: str, steps: int = 5) -> None:
    eager = _model()
    graphed = copy.deepcopy(eager)
    step = CompiledStep(graphed, backend=backend)
    ce = cg = None
    mixed = False
    for i in range(steps):
        b = _batch(i)
        ce = ce or eager.initial_carry(b)
        cg = cg or graphed.initial_carry(b)
        ce, loss_e, met_e, out_e, _ = eager(ce, b)
        cg, loss_g, met_g, out_g, _ = step(cg, b)
        loss_e.backward()
        loss_g.backward()
        torch.testing.assert_close(loss_g, loss_e, atol=0, rtol=LOSS_RTOL)
        torch.testing.assert_close(out_g["logits"], out_e["logits"], atol=ATOL, rtol=ATOL)
        torch.testing.assert_close(cg.z_H, ce.z_H, atol=ATOL, rtol=ATOL)
        assert cg.halted.tolist() == ce.halted.tolist() and cg.steps.tolist() == ce.steps.tolist()
        ids = "puzzle_identifiers"
        assert cg.current_data[ids].tolist() == ce.current_data[ids].tolist()
        for k in ("count", "exact_accuracy", "steps"):
            assert met_g[k].item() == met_e[k].item(), k
        mixed |= 0 < int(ce.halted.sum()) < len(ce.halted)
        _close_grads(eager, graphed)
        pe_e, pe_g = eager.model.puzzle_emb, graphed.model.puzzle_emb
        assert pe_g.local_ids.tolist() == pe_e.local_ids.tolist()
        torch.testing.assert_close(pe_g.local_weights.grad, pe_e.local_weights.grad, atol=GRAD_TOL, rtol=0)
        for m in (eager, graphed):
            m.zero_grad(set_to_none=True)
            m.model.puzzle_emb.local_weights.grad = None
    assert mixed, "no step halted some rows and not others: the test lost its coverage of the resets"


def test_compiled_training_step_traces_whole_and_matches_eager():
    """fullgraph tracing of the whole step (no graph break), bit for bit against eager."""
    _training_steps_match("aot_eager")


def test_returned_carry_is_the_static_buffer_and_foreign_carries_are_copied_in():
    step = CompiledStep(_model(), backend="aot_eager")
    b = _batch(0)
    first, *_ = step(step.trm.initial_carry(b), b)
    again, *_ = step(first, b)
    assert again.z_H.data_ptr() == first.z_H.data_ptr()  # the same static buffers every call
    fresh = step.trm.initial_carry(b)  # another carry (a resumed one, a micro-batch slot): copied in
    out, *_ = step(fresh, b)
    assert out.z_H.data_ptr() == first.z_H.data_ptr() and out.steps.tolist() == [1] * 4


def test_trainer_graphed_step_matches_eager(golden_build, monkeypatch):
    """trm.engine with compile_step: grads into .grad buffers kept outside the graphs, zeroed in
    place; two micro-batch slots sharing the static carry (each keeps a clone); the same
    parameters after every optimizer step as the eager Trainer."""
    import trm.distributed as D
    from trm.config import TrainConfig
    from trm.data import TrainSampler, load_split
    from trm.engine import build_trainer

    monkeypatch.setattr(CompiledStep, "backend", "aot_eager")
    split = load_split(golden_build.output, "train")
    arch = ModelConfig(**{**CFG, "num_puzzle_identifiers": 1})
    ctx = D.DistContext(device=torch.device("cpu"))
    trainers = []
    for compile_, whole in ((False, False), (True, True)):
        cfg = TrainConfig(arch=arch, data_path=str(golden_build.output), global_batch_size=8,
                          grad_accum_steps=2, epochs=10, eval_interval=10, evaluate=False, lr=1e-2,
                          lr_warmup_steps=1, ema=True, compile=compile_, compile_step=whole, progress=False)
        trainers.append(build_trainer(cfg, ctx, split))
    eager, graphed = trainers
    assert graphed.graphed and isinstance(graphed.step_fn, CompiledStep) and not eager.graphed
    graphed.model.load_state_dict(eager.model.state_dict())
    for n, s in eager.ema.shadows.items():
        graphed.ema.shadows[n].copy_(s)
    batches = TrainSampler(split, 8, 10, 0).iter_iteration(TrainSampler.start_position(0))
    for _ in range(4):
        gbatch, _ = next(batches)
        for t in trainers:
            t.train_step(gbatch)
        assert all(p.grad is not None and not p.grad.any() for p in graphed.params)  # zeroed in place
        for (name, p), q in zip(eager.model.named_parameters(), graphed.model.parameters()):
            torch.testing.assert_close(q, p, atol=1e-6, rtol=0, msg=name)
        torch.testing.assert_close(graphed.model.puzzle_emb.weights, eager.model.puzzle_emb.weights,
                                   atol=1e-6, rtol=0)
        for ce, cg in zip(eager.carries, graphed.carries):
            assert cg.steps.tolist() == ce.steps.tolist()
            torch.testing.assert_close(cg.z_L, ce.z_L, atol=ATOL, rtol=ATOL)
    assert graphed.carries[0].z_H.data_ptr() != graphed.carries[1].z_H.data_ptr()
    me, mg = eager.pop_metrics(), graphed.pop_metrics()
    assert mg["train/loss"] == pytest.approx(me["train/loss"], rel=LOSS_RTOL)


def _eval_data(tmp_path):
    from dataset_builder.build import BuildConfig, build_dataset

    tasks = {"aaaa0001": {"train": [{"input": [[1, 0], [0, 1]], "output": [[2, 0], [0, 2]]}],
                          "test": [{"input": [[1, 1], [0, 0]]}, {"input": [[0, 1]]}]},
             "bbbb0002": {"train": [{"input": [[1, 2, 3]], "output": [[3, 2, 1]]}],
                          "test": [{"input": [[7, 8]]}]}}
    build_dataset(BuildConfig(output_dir=tmp_path / "data", task_data={"test": tasks}, subsets=["test"],
                              test_set_name="test", num_aug=2, seed=0, quiet=True, force=True))
    return tmp_path / "data"


def _eval_model(data):
    import json

    n_ids = json.loads((data / "test" / "dataset.json").read_text())["num_puzzle_identifiers"]
    torch.manual_seed(0)
    model = TRM(ModelConfig(**{**CFG, "num_puzzle_identifiers": n_ids}))
    with torch.no_grad():
        model.q_head.weight.normal_(0, 0.1)
        model.puzzle_emb.weights.normal_()
    return model


def _same_predictions(a, b, atol: float = 0.0) -> None:
    assert a.rows.tolist() == b.rows.tolist() and (a.preds == b.preds).all() and (a.steps == b.steps).all()
    torch.testing.assert_close(torch.from_numpy(a.q_halt), torch.from_numpy(b.q_halt), atol=atol, rtol=0)


@pytest.mark.parametrize("early_exit", [False, True])
def test_graphed_evaluation_predicts_what_eager_does(tmp_path, monkeypatch, early_exit):
    """Batches of fixed size (the last one padded) through the static buffers; early exit
    reassigns carry.halted on the returned carry, which must be copied in on the next call."""
    from trm.evaluate import predict

    monkeypatch.setattr(CompiledStep, "backend", "aot_eager")
    data = _eval_data(tmp_path)
    model = _eval_model(data)
    kw = dict(global_batch_size=4, early_exit=early_exit)
    _same_predictions(predict(model, data, graph=True, **kw), predict(model, data, **kw))


def test_graphed_evaluation_falls_back_when_compiling_fails(tmp_path, monkeypatch, capsys):
    from trm.evaluate import predict

    def broken(self, carry, batch):
        raise RuntimeError("no graphs today")

    monkeypatch.setattr(CompiledStep, "__call__", broken)
    data = _eval_data(tmp_path)
    model = _eval_model(data)
    _same_predictions(predict(model, data, global_batch_size=4, graph=True),
                      predict(model, data, global_batch_size=4))
    out = capsys.readouterr().out
    assert "graphed evaluation failed (RuntimeError: no graphs today); evaluating without it" in out


def test_evaluate_compile_scope():
    from trm.evaluate import compile_scope

    assert compile_scope("auto", "cpu") == "off" and compile_scope("on", "cpu") == "net"
    assert compile_scope("step", "cpu") == "step" and compile_scope("off", "cuda") == "off"


@pytest.mark.slow
def test_inductor_compiled_step_matches_eager(tmp_path):
    """What runs on CUDA, code generation included (mode "reduce-overhead", graphs off on CPU):
    the training step within the golden tolerances, and the evaluation's predictions."""
    from trm.evaluate import predict

    _training_steps_match("inductor", steps=4)
    data = _eval_data(tmp_path)
    model = _eval_model(data)
    _same_predictions(predict(model, data, global_batch_size=4, graph=True),
                      predict(model, data, global_batch_size=4), atol=ATOL)
