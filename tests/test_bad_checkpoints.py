"""A published checkpoint that cannot be used is ONE line -- the file, what is wrong with it in the
user's terms, what to do -- with exit 3 (2 when it does not exist), no traceback and nothing
written, wherever it is given: `python -m trm.evaluate --checkpoint`, `python -m trm.train
--load_checkpoint`, the Kaggle bundles (`make kaggle-datasets CKPT=`), the Kaggle simulation (`make
kaggle-sim CKPT=`) and the competition notebook's attached weights (whose fallback submission.json
stays valid). docs/checkpoints.md lists the cases.

The files are the golden upstream checkpoint (golden/model/step_0, a state_dict as upstream saves
it) laid out as an upstream run publishes it -- step_N files with all_config.yaml beside them -- and
then spoilt the ways a user's copy really is: cut off, an HTML page saved under its name, a garbled
all_config.yaml, another run's all_config.yaml, an invalid architecture. trm.evaluate runs as a
user would run it (a subprocess); the other entry points run in-process (the same cli_main).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.checkpoints import upstream_run, write_all_config

REPO = Path(__file__).resolve().parents[1]
CASES = ("truncated", "html", "garbled_yaml", "other_runs_yaml", "invalid_arch")


@pytest.fixture(scope="module")
def bad(golden, tmp_path_factory) -> dict:
    """{case: (the step_N file to give, the words its line must hold)} and the golden facts used."""
    root = tmp_path_factory.mktemp("bad")
    arch = json.loads((golden / "model" / "config.json").read_text())["arch"]
    src = golden / "model" / "step_0"
    out = {}
    for case in CASES:
        d = upstream_run(src, arch, root / case, steps=(10, 20))  # two steps: step_20 is the one named
        out[case] = d / "step_20"
    full = src.stat().st_size
    cut = out["truncated"]
    cut.write_bytes(src.read_bytes()[: full // 2])  # a download that stopped halfway; step_10 is complete
    out["html"].write_text("<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body></body></html>\n")
    yaml_of = {c: out[c].parent / "all_config.yaml" for c in CASES}
    text = yaml_of["garbled_yaml"].read_text()
    yaml_of["garbled_yaml"].write_text(text.replace("arch:\n", "arch:\n  hidden_size: [64\n", 1))
    h = arch["hidden_size"]
    other = dict(arch, hidden_size=2 * h)  # another run's config: twice as wide, heads still divide it
    write_all_config(out["other_runs_yaml"].parent, other)
    odd = next(n for n in range(2, h) if h % n)  # hidden_size not divisible by num_heads
    write_all_config(out["invalid_arch"].parent, dict(arch, num_heads=odd))
    words = {
        "truncated": [str(cut), "incomplete", f"{full // 2:,} bytes", "download it again"],
        "html": [str(out["html"]), "not a torch checkpoint", "HTML", "download the file itself"],
        "garbled_yaml": [str(yaml_of["garbled_yaml"]), "not valid YAML", "line ", "put back"],
        "other_runs_yaml": [str(yaml_of["other_runs_yaml"]), str(out["other_runs_yaml"]),
                            f"arch.hidden_size is {2 * h}",
                            f"embed_tokens.weight is [{arch['vocab_size']}, {h}]",
                            "beside it"],
        "invalid_arch": [str(yaml_of["invalid_arch"]), f"not divisible by num_heads {odd}", "beside it"],
    }
    return {"files": out, "words": words, "full_bytes": full, "cut_bytes": full // 2}


def check_line(line: str, bad: dict, case: str) -> None:
    assert "\n" not in line.strip(), line
    for w in bad["words"][case]:
        assert w in line, (case, w, line)
    assert "puzzle-emb" not in line and "puzzle_emb mean" not in line, line  # no unrelated hint
    if case == "truncated":  # the size a complete file needs: more than it has, no more than the real one
        need = int(re.search(r"at least ([\d,]+) bytes", line).group(1).replace(",", ""))
        assert bad["cut_bytes"] < need <= bad["full_bytes"], (need, line)


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.mark.parametrize("case", CASES)
def test_evaluate(bad, golden, case, tmp_path):
    out = tmp_path / "eval"
    p = subprocess.run([sys.executable, "-m", "trm.evaluate", "--checkpoint", str(bad["files"][case]),
                        "--data", str(golden / "arc_build" / "output"), "--output-dir", str(out),
                        "--device", "cpu"],
                       cwd=REPO, capture_output=True, text=True, timeout=300, env=_env())
    assert p.returncode == 3, (p.returncode, p.stderr[-2000:])
    check_line(one_error_line(p.stderr), bad, case)
    assert not out.exists()


@pytest.mark.parametrize("case", CASES)
def test_train_load_checkpoint(bad, golden, case, tmp_path, capsys):
    from trm.train import main

    run_dir = tmp_path / "run"
    rc = main(["--preset", "smoke", "--data_path", str(golden / "arc_build" / "output"), "--run_dir",
               str(run_dir), "--load_checkpoint", str(bad["files"][case]), "--load_puzzle_emb", "mean",
               "--progress", "false"])
    assert rc == 3
    check_line(one_error_line(capsys.readouterr().err), bad, case)
    assert not run_dir.exists()  # not even the empty run directory the lock had created


@pytest.mark.parametrize("case", CASES)
def test_kaggle_bundles_and_sim(bad, case, tmp_path, capsys):
    """make kaggle-datasets CKPT=... and make kaggle-sim CKPT=...: refused before anything is staged."""
    from trmkit import bundles, sim

    assert bundles.main(["push", "--dry-run", "--checkpoint", str(bad["files"][case]), "--out",
                         str(tmp_path / "stage")]) == 3
    check_line(one_error_line(capsys.readouterr().err), bad, case)
    assert sim.main(["--checkpoint", str(bad["files"][case]), "--out", str(tmp_path / "sim")]) == 3
    check_line(one_error_line(capsys.readouterr().err), bad, case)
    assert not (tmp_path / "stage").exists() and not (tmp_path / "sim").exists()


@pytest.mark.parametrize("case", CASES)
def test_competition_notebook_keeps_its_fallback(bad, case, tmp_path, monkeypatch):
    """The notebook's weights attached as found under the input root (the newest step_N of the
    folder: step_20, never the complete step_10 beside it): install() stops with the one line --
    all a notebook shows of it -- and the fallback submission.json is what the run leaves."""
    from trm import kaggle_input, ttt
    from trm.checkpoint import CheckpointError
    from trm.submission import validate_submission

    task = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}], "test": [{"input": [[3, 4]]}]}
    comp = tmp_path / "input" / "comp"
    comp.mkdir(parents=True)
    (comp / kaggle_input.TEST_CHALLENGES).write_text(json.dumps({"aaaa0001": task}))
    shutil.copytree(bad["files"][case].parent, tmp_path / "input" / "weights")
    monkeypatch.setenv("TRM_TTT_SCRATCH", str(tmp_path / "scratch"))
    ctx = ttt.start(str(tmp_path / "input"), str(tmp_path / "working"))
    with pytest.raises(CheckpointError) as e:
        ttt.install(ctx, ttt.TTTParams(install_wheels=False))
    shown = e.value._render_traceback_()  # what IPython prints for it in the notebook cell
    assert len(shown) == 1
    check_line(shown[0], _moved(bad, case, tmp_path), case)
    sub = json.loads((tmp_path / "working" / "submission.json").read_text())
    assert validate_submission(sub, {"aaaa0001": task}) == []
    assert sorted(p.name for p in (tmp_path / "working").iterdir()) == ["submission.json"]


def _moved(bad: dict, case: str, tmp_path: Path) -> dict:
    """bad's expected words, for the copy of the case's folder under the notebook's input root."""
    old, new = str(bad["files"][case].parent), str(tmp_path / "input" / "weights")
    return {**bad, "words": {case: [w.replace(old, new) for w in bad["words"][case]]}}


def test_a_named_incomplete_step_is_never_replaced_by_another(bad, tmp_path, capsys):
    """An upstream folder with several step_N: naming the cut-off one is an error about that one
    (even though a complete step_10 sits beside it), in the resolver and in the notebook's
    weights_dir; naming step_10 loads step_10."""
    from trm import kaggle_input
    from trm.checkpoint import CheckpointError, load_checkpoint
    from trm.sources import usable_checkpoint

    cut = bad["files"]["truncated"]
    assert (cut.parent / "step_10").is_file()
    with pytest.raises(CheckpointError, match=re.escape(str(cut))):
        usable_checkpoint(cut)
    assert kaggle_input.find_weights(cut, tmp_path) == cut
    # discovery: the newest, and its error if it is bad
    assert kaggle_input.find_weights(cut.parent, tmp_path) == cut
    _, meta = load_checkpoint(cut.parent / "step_10")
    assert meta["source"] == "step_10"


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("TRM_DEBUG", None)
    return env
