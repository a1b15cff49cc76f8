"""The fine-tune's length from the clock (trm.finetune.stop_reason): a faked step speed, no sleeping.

    .venv/bin/pytest -q tests/test_finetune_clock.py

A simulated fine-tune loop calls stop_reason after every step on a fake clock (seconds advance by the
step time the scenario gives), at the paper config's recursion and the notebook's defaults: the cap
holds on a fast machine, a slow one stops in time for the predicted evaluation (and not a step
earlier), a mid-run slowdown still leaves the evaluation its first rounds, a written
finetune_epochs wins. Then one real fine-tune per stop kind records it in ttt_finetune.json.
"""

from __future__ import annotations

import json

import pytest

from trm import finetune
from trm.anytime import version_bounds
from trm.ttt_params import TTTParams

P = TTTParams().resolved()  # the notebook's defaults
T0, BUDGET_S = 1000.0, 11.5 * 3600
EVAL_ROWS = 259 * (P.num_aug + 1)  # 259 test inputs at the default augmentations
GBS = P.global_batch_size


def arch():
    from trm.model import ModelConfig

    return ModelConfig()  # the paper's recursion, as the default settings fine-tune it


def simulate(step_s, p: TTTParams = P, demo_pairs: int = 767, final: float = T0 + BUDGET_S):
    """Run the stop rule with each step taking step_s(step) seconds; (steps, reason, times)."""
    total_steps = p.epoch_limit * demo_pairs // GBS
    deadline = T0 + (1 - p.eval_share) * (final - T0)  # ttt._finetune's share of the clock
    now, times = T0, [T0]
    for step in range(1, 10**7):
        now += step_s(step)
        times.append(now)
        reason = finetune.stop_reason(p, step, total_steps, arch(), GBS, now, T0, deadline, final, EVAL_ROWS)
        if reason is not None:
            return step, reason, times
    raise AssertionError("never stopped")


def eval_seconds(s_per_row: float) -> float:
    """The evaluation's time as the reserve predicts it at s_per_row training seconds per row."""
    return EVAL_ROWS * finetune.eval_train_rows(arch()) * s_per_row


def test_a_fast_machine_stops_at_the_cap():
    step, reason, times = simulate(lambda s: 0.5)  # 768 rows/s: 4000 epochs in about an hour
    assert reason == f"cap: max_epochs = {P.max_epochs}"
    assert step == P.max_epochs * 767 // GBS and times[-1] < T0 + BUDGET_S / 2


@pytest.mark.parametrize("s_per_step", [8.0, 10.0])  # 48 and 38 rows/s: about T4x2 at base clock
def test_a_slow_machine_stops_for_the_evaluation_and_not_a_step_earlier(s_per_step):
    step, reason, times = simulate(lambda s: s_per_step)
    assert reason.startswith("clock: the evaluation's reserve")
    s_row = s_per_step / GBS
    reserve = finetune.eval_reserve_s(EVAL_ROWS, arch(), s_row)
    final = T0 + BUDGET_S
    assert final - times[-1] <= reserve  # stopped once what is left is the reserve ...
    assert final - times[-2] > reserve  # ... not a step earlier
    assert times[-1] + eval_seconds(s_row) < final  # the predicted evaluation fits
    assert final - times[-1] - eval_seconds(s_row) < 2 * 3600  # and the clock is not left hours unused


def test_a_mid_run_slowdown_still_leaves_the_evaluation_its_rounds():
    """The step time doubles half-way through: the stop predicts from the average speed (which lags
    the slowdown), and the evaluation at the slowed speed still ends most of its rounds in time."""
    slow_from = 400
    step, reason, times = simulate(lambda s: 10.0 if s < slow_from else 20.0)
    assert step > slow_from and reason.startswith("clock: the evaluation's reserve")
    left = T0 + BUDGET_S - times[-1]
    actual = eval_seconds(20.0 / GBS)  # at the slowed speed
    bounds = version_bounds(P.num_aug + 1, "anytime")[1:]
    rounds = sum(actual * b / (P.num_aug + 1) <= left for b in bounds)
    assert rounds >= len(bounds) - 3 and rounds >= 1, (rounds, len(bounds))


def test_a_written_finetune_epochs_wins_over_the_clock_and_the_cap():
    written = TTTParams(finetune_epochs=300).resolved()
    step, reason, _ = simulate(lambda s: 0.5, p=written)
    assert reason == "epochs: finetune_epochs = 300" and step == 300 * 767 // GBS
    more = TTTParams(finetune_epochs=6000).resolved()  # above the cap: the written count is the limit
    step, reason, _ = simulate(lambda s: 0.5, p=more)
    assert reason == "epochs: finetune_epochs = 6000"


def test_the_deadline_always_stops_it():
    p = TTTParams(max_steps=None).resolved()
    step, reason, times = simulate(lambda s: 5000.0, p=p)  # a step longer than the reserve's lead
    assert reason.startswith("clock") and times[-1] <= T0 + BUDGET_S + 5000.0


# --------------------------------------------------------------------------- the record

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    from tests.test_ttt import REPO, TASKS, TINY, write
    from trm import ttt
    from trm.checkpoint import export_slim, save_checkpoint
    from trm.model import TRM, ModelConfig

    d = tmp_path_factory.mktemp("clock")
    write(d / "challenges.json", TASKS)
    ttt.build_ttt_dataset(d / "challenges.json", d / "data", num_aug=2, repo=REPO)
    torch.manual_seed(0)
    save_checkpoint(d / "full", TRM(ModelConfig(**TINY, num_puzzle_identifiers=5)), meta={"step": 1})
    export_slim(d / "full", d / "slim")
    return d


@pytest.mark.parametrize("params, kind", [
    ({"max_epochs": 2}, "cap"), ({"finetune_epochs": 2}, "epochs"), ({"max_steps": 2}, "steps"),
])
def test_the_record_says_why_it_stopped(tiny, params, kind):
    import time

    spec = {"data": str(tiny / "data"), "weights": str(tiny / "slim"), "out": str(tiny / kind),
            "deadline": time.time() + 600,
            "params": {"device": "cpu", "global_batch_size": 4, "lr_warmup_steps": 1, **params}}
    finetune.finetune(spec)
    rec = json.loads((tiny / kind / "ttt_finetune.json").read_text())
    assert rec["stop_kind"] == kind and rec["stopped_by"].startswith(kind + ":")
    if kind != "steps":  # 2 epochs of the 4 demo pairs at batch 4
        assert rec["steps"] == rec["total_steps"] == 2 and rec["epochs_done"] == 2.0


def test_the_fine_tune_runs_with_muon(tiny):
    """optimizer = "muon" reaches the engine through the notebook's parameters (trm.finetune passes
    every shared name): the fine-tune trains with it and saves."""
    import time

    import torch

    spec = {"data": str(tiny / "data"), "weights": str(tiny / "slim"), "out": str(tiny / "muon"),
            "deadline": time.time() + 600,
            "params": {"device": "cpu", "global_batch_size": 4, "lr_warmup_steps": 1, "max_steps": 2,
                       "optimizer": "muon"}}
    finetune.finetune(spec)
    rec = json.loads((tiny / "muon" / "ttt_finetune.json").read_text())
    assert rec["steps"] == 2 and rec["stop_kind"] == "steps"
    before = torch.load(tiny / "full" / "model.pt", map_location="cpu", weights_only=True)
    after = torch.load(tiny / "muon" / "model.pt", map_location="cpu", weights_only=True)
    moved = [k for k in before
             if "blocks" in k and before[k].ndim == 2 and not torch.equal(before[k], after[k])]
    assert moved  # the block matrices trained


def _config(**params):
    from trm.model import ModelConfig

    return finetune.finetune_config(TTTParams(**params).resolved(), ModelConfig(), "data", 8, 1)


def test_the_cap_changes_no_early_batch():
    """A clock-fitted run draws its data order in blocks of SAMPLER_EPOCHS whatever its cap; a written
    finetune_epochs is one iteration of that many epochs."""
    blocks = {_config(max_epochs=m).eval_interval for m in (4000, 6000)}
    assert blocks == {finetune.SAMPLER_EPOCHS}
    assert _config(max_epochs=500).eval_interval == 500 and _config(finetune_epochs=300).eval_interval == 300
    assert (_config(max_epochs=6000).epochs, _config(finetune_epochs=300).epochs) == (6000, 300)
