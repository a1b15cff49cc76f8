"""trm.train: upstream sampling, EMA, a tiny end-to-end run, total_steps, OOM. Run: pytest tests/test_train.py

Uses the golden built dataset (sizes read from its dataset.json) and a tiny model (hidden 32,
one block, one cycle) so a run takes seconds on CPU.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

import trm.train as T
from trm import engine, runlog
from trm.config import resolve_config
from trm.data import IGNORE_LABEL_ID, TrainSampler, load_split, rank_slice

TINY = ["--arch.hidden_size", "32", "--arch.num_heads", "2", "--arch.n_layers", "1",
        "--arch.n_outer_cycles", "1",
        "--arch.n_latent_steps", "1", "--arch.halt_max_steps", "2", "--arch.halt_exploration_prob", "0",
        "--global_batch_size", "8", "--epochs", "1", "--eval_interval", "1", "--evaluate", "false",
        "--progress", "false", "--log_interval", "1", "--lr", "1e-3", "--lr_warmup_steps", "1",
        "--num_threads", "1"]


@pytest.fixture(scope="module")
def data(golden_build):
    return golden_build.output


def _meta(data, split: str = "train") -> dict:
    return json.loads((data / split / "dataset.json").read_text())


def test_sampler_follows_upstream_packing(data):
    split = load_split(data, "train")
    gbs, epochs = 16, 3
    sampler = TrainSampler(split, gbs, epochs, seed=5)
    batches = list(sampler.iter_iteration(sampler.start_position(0)))
    assert batches, "one iteration of 3 epochs must yield batches"
    puzzle_of_row = np.repeat(np.arange(len(split.puzzle_identifiers)), np.diff(split.puzzle_indices))
    group_of_puzzle = np.repeat(np.arange(split.num_groups), np.diff(split.group_indices))
    groups_seen = []
    for b, pos in batches:
        idx, pids = b.example_indices, b.puzzle_identifiers
        assert idx.shape == pids.shape == (gbs,)  # full batches only (the last partial one is dropped)
        puzzles = puzzle_of_row[idx]
        assert np.array_equal(split.puzzle_identifiers[puzzles], pids)
        # rows come in chunks, one per group visit: all examples of one puzzle in a random order
        # (only the batch's last chunk may be cut short)
        chunks, cur = [], []
        for i in range(gbs):
            size = split.puzzle_indices[puzzles[i] + 1] - split.puzzle_indices[puzzles[i]]
            if cur and (puzzles[i] != puzzles[cur[0]] or len(cur) == size):
                chunks.append(cur)
                cur = []
            cur.append(i)
        chunks.append(cur)
        for c in chunks[:-1]:
            start, end = split.puzzle_indices[puzzles[c[0]]], split.puzzle_indices[puzzles[c[0]] + 1]
            assert sorted(idx[c]) == list(range(start, end))
        assert len(set(idx[chunks[-1]])) == len(chunks[-1])
        groups_seen += [group_of_puzzle[puzzles[c[0]]] for c in chunks]
        assert pos["iteration"] == 0
    # group order = concatenated permutations: every group once per epoch in each epoch-block
    first_epoch = groups_seen[: split.num_groups]
    assert sorted(first_epoch) == list(range(split.num_groups))
    # deterministic from the seed; another seed or iteration gives another stream
    again = list(TrainSampler(split, gbs, epochs, seed=5).iter_iteration(sampler.start_position(0)))
    assert all(np.array_equal(a.example_indices, b.example_indices) for (a, _), (b, _) in zip(batches, again))
    other = next(sampler.iter_iteration(sampler.start_position(1)))[0]
    assert not np.array_equal(other.example_indices, batches[0][0].example_indices)


def test_sampler_resumes_mid_iteration(data):
    split = load_split(data, "train")
    sampler = TrainSampler(split, 8, 2, seed=0)
    full = list(sampler.iter_iteration(sampler.start_position(0)))
    pos = json.loads(json.dumps(full[3][1]))  # positions survive JSON (and torch.save)
    rest = list(sampler.iter_iteration(pos))
    assert len(rest) == len(full) - 4
    assert all(np.array_equal(a.example_indices, b.example_indices) for (a, _), (b, _) in zip(full[4:], rest))


def test_collate_slices_and_ignore_label(data):
    split = load_split(data, "train")
    b, _ = next(TrainSampler(split, 8, 1, seed=0).iter_iteration(TrainSampler.start_position()))
    whole = b.collate(split, slice(0, 8))
    parts = [b.collate(split, rank_slice(8, r, 2)) for r in range(2)]
    for k in whole:
        assert np.array_equal(whole[k], np.concatenate([p[k] for p in parts]))
    assert whole["inputs"].dtype == np.int32 and (whole["labels"] == IGNORE_LABEL_ID).any()
    assert not (whole["labels"] == 0).any()  # PAD labels became -100
    assert np.array_equal(whole["inputs"][2], split.inputs[b.example_indices[2]])


def test_ema_matches_upstream_formula():
    m = torch.nn.Linear(3, 2)
    ema = engine.EMA(m, 0.9)
    start = {n: p.detach().clone() for n, p in m.named_parameters()}
    with torch.no_grad():
        for p in m.parameters():
            p.add_(1.0)
    ema.update(m)
    for n, p in m.named_parameters():
        torch.testing.assert_close(ema.shadows[n], 0.1 * p.detach() + 0.9 * start[n])
    with ema.applied(m):
        torch.testing.assert_close(m.weight.detach(), ema.shadows["weight"])
    torch.testing.assert_close(m.weight.detach(), start["weight"] + 1)


def test_tiny_run_end_to_end(data, tmp_path, capsys):
    """Evaluates, checkpoints, logs metrics, writes the curve, config and provenance."""
    run = tmp_path / "run"
    cfg = resolve_config("smoke", TINY + ["--evaluate", "true", "--epochs", "2", "--ema", "--wandb",
                                          "--data_path", str(data), "--run_dir", str(run),
                                          "--eval_batch_size", str(load_split(data, "test").num_examples)])
    out = T.train(cfg)
    assert out == run
    printed = capsys.readouterr().out
    assert "`wandb` package is not installed" in printed and '"global_batch_size": 8' in printed
    for f in ("config.json", "metrics.jsonl", "COMMANDS.txt", "ENVIRONMENT.txt", "TRM_COMMIT.txt",
              "curves.png"):
        assert (run / f).is_file(), f
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "train/loss" in x]
    eval_lines = [x for x in lines if "eval/pass@2" in x]
    assert [x["step"] for x in train_lines] == list(range(1, len(train_lines) + 1))
    assert len(eval_lines) == 2 and all(np.isfinite(x["train/loss"]) for x in train_lines)
    last = train_lines[-1]["step"]
    ckpts = sorted((run / "checkpoints").iterdir(), key=lambda p: int(p.name.removeprefix("step_")))
    assert ckpts[-1].name == f"step_{last}" and len(ckpts) == 2  # one after each eval
    meta = json.loads((ckpts[-1] / "meta.json").read_text())
    assert meta["step"] == last and meta["weights"] == "ema" and meta["train_config"]["ema"] is True
    assert (run / "eval" / f"step_{last}" / "submission.json").is_file()
    written = json.loads((run / "eval" / f"step_{last}" / "metrics.json").read_text())
    assert meta["eval"] == written and written["step"] == last  # the checkpoint records its own evaluation
    assert eval_lines[-1]["eval/pass@2"] == written["pass@2"]
    saved = json.loads((run / "config.json").read_text())
    assert saved["arch"]["num_puzzle_identifiers"] == _meta(data)["num_puzzle_identifiers"]
    assert saved["run_dir"] == str(run)
    assert "in-process trm.train.train(config)" in (run / "COMMANDS.txt").read_text()


def _with_mean_examples(data, tmp_path, mean: float):
    ds = tmp_path / "ds"
    shutil.copytree(data, ds)
    meta_path = ds / "train" / "dataset.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "mean_puzzle_examples": mean}))
    return ds


def test_stops_exactly_at_total_steps(data, tmp_path, capsys):
    """Upstream keeps counting no-op batches past total_steps; the kit stops at it."""
    groups = _meta(data)["total_groups"]
    # total_steps = int(2 * groups * 1.5 / 8) < batches available
    ds = _with_mean_examples(data, tmp_path, 1.5)
    total = int(2 * groups * 1.5 / 8)
    assert total >= 2, "the golden set is too small for this test"
    run = T.train(resolve_config("smoke", TINY + ["--epochs", "2", "--eval_interval", "2",
                                                  "--data_path", str(ds),
                                                  "--run_dir", str(tmp_path / "run")]))
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == total and [p.name for p in (run / "checkpoints").iterdir()] == [f"step_{total}"]
    assert f"run directory: {run} (step {total}/{total})\n" in capsys.readouterr().out


def test_epochs_done_before_total_steps_estimate_says_so(data, tmp_path, capsys):
    """total_steps is an estimate; when the sampler runs out first the last line says why."""
    meta = _meta(data)
    mean = 2.0 * meta["mean_puzzle_examples"]  # twice the real mean: more steps than the data gives
    ds = _with_mean_examples(data, tmp_path, mean)
    total = int(2 * meta["total_groups"] * mean / 8)
    run = T.train(resolve_config("smoke", TINY + ["--epochs", "2", "--eval_interval", "2",
                                                  "--data_path", str(ds),
                                                  "--run_dir", str(tmp_path / "run")]))
    last = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert last < total
    assert (f"(step {last}/{total}; all 2 epochs done, total_steps is upstream's estimate)"
            in capsys.readouterr().out)


def test_cuda_oom_stops_with_advice(data, tmp_path, monkeypatch, capsys):
    def boom(self, batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(engine.Trainer, "train_step", boom)
    rc = T.main(["--preset", "smoke", *TINY, "--grad-accum-steps", "2", "--data_path", str(data),
                 "--run_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc != 0
    assert "Global batch 8" in err and "micro-batch 4" in err
    assert "--grad-accum-steps 4" in err and "more GPUs" in err and "never lowers" in err


def test_curves_png_is_optional(tmp_path, monkeypatch, capsys):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/loss": 2.0}\n'
                                            '{"step": 2, "train/loss": 1.5}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    runlog.plot(tmp_path)
    assert "curves.png skipped: matplotlib is not installed" in capsys.readouterr().out
    assert not (tmp_path / "curves.png").exists()


def test_progress_lines_without_the_bar(data, tmp_path, capsys):
    """--progress false (notebooks, logs): the trainer itself prints a metrics line every
    progress_seconds (0 here: every log_interval step), readable in a saved notebook."""
    cfg = resolve_config("smoke", ["--data_path", str(data), "--run_dir", str(tmp_path / "run"), *TINY,
                                   "--progress_seconds", "0", "--stop_at_step", "3"])
    T.train(cfg)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("step ") and " | loss " in ln]
    assert [ln.split("/")[0] for ln in lines] == ["step 1", "step 2", "step 3"]
    assert runlog.progress_line({"step": 5, "train/loss": 1.5, "train/accuracy": 0.25,
                                 "train/count": 3}, 9) == \
        "step 5/9 | loss 1.5000 | accuracy (per cell) 0.250"
    assert "accuracy" not in runlog.progress_line({"step": 5, "train/loss": 1.5, "train/accuracy": 0.0}, 9)


def _trainer(data, *overrides):
    cfg = resolve_config("smoke", TINY + ["--data_path", str(data), "--device", "cpu", *overrides])
    return engine.build_trainer(cfg, engine.D.DistContext(), load_split(data, "train"))


def _run_steps(trainer, n: int) -> dict[str, torch.Tensor]:
    batches = TrainSampler(trainer.split, trainer.cfg.global_batch_size, 1, trainer.cfg.seed)
    for (b, _), _ in zip(batches.iter_iteration(trainer.position), range(n)):
        trainer.train_step(b)
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters()}


@pytest.mark.parametrize("optimizer", ["adam_atan2", "muon"])
def test_accumulation_equals_one_batch(data, optimizer):
    """2 micro-batches of 4 == one batch of 8 over 2 steps (the second uses the optimizers' state;
    same seed, ACT exploration off): only the matmul shapes differ, so float rounding does. Muon
    orthogonalises in bfloat16 with a slope-3.4 quintic (x 3.4^5 on near-null directions), so a
    1e-8 gradient difference that flips a bf16 rounding shows in its matrices: measured 0 after one
    step, 0.3 % of the distance moved after two, 6 % after three; a wrong gradient moves ~100 %."""
    init = _run_steps(_trainer(data, "--optimizer", optimizer), 0)
    one = _run_steps(_trainer(data, "--optimizer", optimizer), 2)
    acc = _run_steps(_trainer(data, "--optimizer", optimizer, "--grad-accum-steps", "2"), 2)
    for k in one:
        moved = (one[k] - init[k]).abs().max().item()
        bf16 = optimizer == "muon" and k.startswith("net.blocks.")
        torch.testing.assert_close(acc[k], one[k], rtol=0, atol=0.02 * moved if bf16 else 1e-6, msg=k)


def test_muon_trains_the_blocks_and_adam_atan2_the_rest(data):
    tr = _trainer(data, "--optimizer", "muon", "--muon_lr", "2e-3")
    on_muon = {id(p) for g in tr.muon.param_groups for p in g["params"]}
    on_adam = {id(p) for g in tr.dense.param_groups for p in g["params"]}
    names = {n: id(p) for n, p in tr.model.named_parameters()}
    assert not on_muon & on_adam and on_muon | on_adam == set(names.values())
    assert {n for n, i in names.items() if i in on_muon} == {n for n in names if n.startswith("net.blocks.")}
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    table = tr.model.puzzle_emb.weights.clone()
    after = _run_steps(tr, 2)
    assert all(not torch.equal(before[n], after[n]) for n in names)  # every weight trains
    assert not torch.equal(table, tr.model.puzzle_emb.weights)  # sign-SGD on the table, as before
    m = tr.pop_metrics()
    # the weights' schedule (warm-up, cosine) at Muon's own base LR: 2e-3 vs --lr 1e-3
    assert m["train/muon_lr"] == tr.muon_lr(2) == pytest.approx(2 * m["train/lr"])
    assert tr.muon.param_groups[0]["lr"] == m["train/muon_lr"]
    default = _trainer(data)
    _run_steps(default, 1)
    assert "train/muon_lr" not in default.pop_metrics()
    assert default.muon is None and len(default.dense.param_groups[0]["params"]) == len(names)
    with pytest.raises(engine.ConfigError, match="optimizer 'sgd': not one of adam_atan2, muon"):
        _trainer(data, "--optimizer", "sgd")
