"""The competition notebook's parameters are strict (trm.ttt_params): a misspelt name, a wrong type
or a value out of range is refused as one line naming the parameter and the fix, before anything
runs -- in the notebook (papermill), in trmkit.perf --set, and for every caller of TTTParams.

    .venv/bin/pytest -q tests/test_ttt_params.py -m "not slow"   # about a second
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import pytest

from trm import ttt_params
from trm.errors import EXIT_USAGE, cli_main
from trm.ttt_params import ParameterError, TTTParams

REPO = Path(__file__).resolve().parents[1]
FIELDS = {f.name: f for f in dataclasses.fields(TTTParams)}
NOT_A_FIELD = "not a field of TTTParams (trm/ttt_params.py); remove it"


def refusal(ns: dict, **kw) -> str:
    with pytest.raises(ParameterError) as e:
        TTTParams.from_namespace(ns, **kw)
    text = str(e.value)
    assert "\n" not in text  # one line
    return text


# (name, value, the fix the line must give); the problems a user reported, then the rest of each rule
BAD = [
    ("lr", -1e-4, "must be 0 or more; write None for the named settings' value, or e.g. lr = 0.0001"),
    ("lr", "1e-4", "must be a number (float) or None, not a string; write lr = 1e-4"),
    ("ema_rate", 1.5, "must be between 0 and 1, both excluded"),
    ("eval_share", 1.5, "must be between 0 and 1, both excluded; e.g. eval_share = 0.05"),
    ("eval_share", 0, "must be between 0 and 1, both excluded"),
    ("safety_minutes", -30, "must be 0 or more; e.g. safety_minutes = 30.0"),
    ("ema", "no", "must be True or False, not a string; write ema = False"),
    ("ema", 1, "must be True or False, not an int; write ema = True"),
    ("freeze_weights", "yes", "write freeze_weights = True"),
    ("puzzle_emb_lr", -0.01, "must be 0 or more"),
    ("weight_decay", -0.1, "must be 0 or more; e.g. weight_decay = 0.1"),
    ("puzzle_emb_weight_decay", -1, "must be 0 or more"),
    ("budget_hours", 0, "must be a positive number; e.g. budget_hours = 12.0"),
    ("budget_hours", None, "must be a number (float), not None; e.g. budget_hours = 12.0"),
    ("lr", float("inf"), "must be a finite number"),
    ("num_aug", "64", "must be a whole number (int) or None, not a string; write num_aug = 64"),
    ("num_aug", 64.0, "not a float; write num_aug = 64"),
    ("num_aug", 6.5, "not a float; write None for the named settings' value, or e.g. num_aug = 128"),
    ("num_aug", [64], "not a list"),
    ("seed", "0", "must be a whole number (int), not a string; write seed = 0"),
    ("n_gpus", "all", "not a string; write None for every visible GPU"),
    ("global_batch_size", -384, "must be a positive number"),
    ("dtype", "bf16", "choose auto, bfloat16, float16 or float32"),
    ("device", "gpu", "choose auto, cpu or cuda"),
    ("mode", "fast", "choose auto, submit or validate"),
    ("settings", "nvrac", "choose default, nvarc or smoke"),
    ("settings", 1, "must be a string, not an int; e.g. settings = 'default'"),
    ("weights_dir", 3, "must be a string or None, not an int"),
    ("weights_dir", Path("/w"), "write weights_dir = '/w'"),
]


@pytest.mark.parametrize("name, value, fix", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_a_bad_value_is_one_line_with_the_fix(name, value, fix):
    text = refusal({name: value})
    assert text.startswith(f"{name} = {value!r}: ") and fix in text, text


@pytest.mark.parametrize("name, value", [
    ("lr", 1), ("lr", 3e-4), ("lr", 0.0), ("budget_hours", 1), ("safety_minutes", 0), ("ema", False),
    ("ema_rate", 0.5), ("save_every_minutes", 0),
    ("weight_decay", 0), ("check_minutes", None), ("max_steps", None), ("num_aug", 1), ("weights_dir", "w"),
    *[("dtype", d) for d in ("auto", "bfloat16", "float16", "float32")], ("device", "cpu"),
    ("mode", "validate"),
])
def test_good_values_pass_as_written(name, value):
    """An int is a fine float (kept as written); None where the field gives it a meaning."""
    got = getattr(TTTParams.from_namespace({name: value}), name)
    assert got == value and type(got) is type(value)


def test_the_named_settings_pass_their_own_checks():
    for name in ttt_params.SETTINGS:
        TTTParams(settings=name).resolved().check()


def test_a_misspelt_name_is_refused_with_the_closest_parameter():
    assert refusal({"num_augs": 64}) == "num_augs: unknown parameter; did you mean num_aug?"
    assert refusal({"LR": 1e-4}) == "LR: unknown parameter; did you mean lr?"
    assert refusal({"zzz": 1}) == f"zzz: unknown parameter; {NOT_A_FIELD}"
    both = refusal({"num_augs": 64, "emarate": 0.9})  # every unknown name, on the one line
    assert "num_augs: unknown parameter; did you mean num_aug?" in both
    assert "emarate: unknown parameter; did you mean ema_rate?" in both


def test_the_notebooks_own_names_are_not_parameters():
    """What the notebook sets itself is passed as `ignore`; `_`-prefixed names (IPython's _, _i1) and
    modules are never parameters; every other name must be a field."""
    ns = {"INPUT_ROOT": "/in", "ctx": object(), "os": os, "_i3": "x", "__name__": "__main__", "lr": 2e-4}
    assert refusal(ns) == (f"INPUT_ROOT: unknown parameter; {NOT_A_FIELD} "
                           f"ctx: unknown parameter; {NOT_A_FIELD}")
    assert TTTParams.from_namespace(ns, ignore={"INPUT_ROOT", "ctx"}).lr == 2e-4


def test_every_field_is_checked_by_its_annotation_and_rules_name_fields():
    """A field's type comes from its annotation: one the checks cannot read would fail at import."""
    assert set(ttt_params.RULES) <= set(FIELDS)
    kinds = {ttt_params._annotation(f)[0] for f in FIELDS.values()}
    assert kinds == set(ttt_params.KINDS)  # every kind the checks know is in use, and no other
    bad = dataclasses.field()
    bad.name, bad.type = "x", "list[int]"
    with pytest.raises(TypeError, match="x: annotation"):
        ttt_params._annotation(bad)


def test_the_dtypes_are_those_the_model_takes():
    from trm.model import pick_dtype

    accepted = [d for d in ("auto", "bfloat16", "float16", "float32") if ttt_params.RULES["dtype"][0](d)]
    assert accepted == ["auto", "bfloat16", "float16", "float32"]
    with warnings.catch_warnings():  # bf16 on a CPU without AMX warns that it is slow
        warnings.simplefilter("ignore")
        for d in accepted:
            pick_dtype("cpu", d)  # raises ValueError for a name it does not take


def test_a_parameter_error_is_a_user_error_with_one_line_in_a_notebook():
    with pytest.raises(ParameterError) as e:
        TTTParams.from_namespace({"num_augs": 64})
    assert isinstance(e.value, ValueError)  # callers that catch ValueError still do
    assert e.value._render_traceback_() == ["error: num_augs: unknown parameter; did you mean num_aug?"]
    assert cli_main(lambda argv: TTTParams.from_namespace({"ema": "no"})) == EXIT_USAGE


@pytest.mark.parametrize("argv, line", [
    (["--set", "num_augs=64"], "error: num_augs: unknown parameter; did you mean num_aug?"),
    (["--set", "lr=-1e-4"], "error: lr = -0.0001: must be 0 or more"),
    (["--set", "ema=no"], "error: ema = 'no': must be True or False, not a string; write ema = False"),
    (["--set", "num_aug"], "error: --set num_aug: write NAME=VALUE, e.g. --set num_aug=64"),
])
def test_perf_set_refuses_a_bad_parameter_first(argv, line, capsys, tmp_path):
    """Before any file is read: the test file named here does not exist."""
    from trmkit import perf

    assert perf.main([*argv, "--test-file", str(tmp_path / "none.json")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(line) and "\n" not in err, err


@pytest.mark.slow
def test_papermill_refuses_a_misspelt_parameter_and_takes_good_ones(tmp_path, monkeypatch):
    """The competition notebook under papermill (as Kaggle runs it): `-p num_augs 64` stops the run
    at the parameters, as its one line; good names (with test hooks) get past them to the next step,
    which here stops on the missing weights."""
    import papermill as pm

    from trmkit.notebooks import _kernel_manager

    root = tmp_path / "input"
    comp = root / "competitions" / "arc-prize-2025" / "arc-agi_test_challenges.json"
    comp.parent.mkdir(parents=True)
    comp.write_text(json.dumps({"aaaa0001": {"train": [{"input": [[1]], "output": [[2]]}],
                                             "test": [{"input": [[1]]}]}}))
    (root / "kit").mkdir()
    (root / "kit" / "trm").symlink_to(REPO / "trm")
    monkeypatch.setenv("TRM_KAGGLE_INPUT", str(root))
    monkeypatch.setenv("TRM_KAGGLE_WORKING", str(tmp_path / "working"))
    monkeypatch.setenv("TRM_TTT_SCRATCH", str(tmp_path / "scratch"))
    runs = {"bad": {"num_augs": 64}, "good": {"num_aug": 2, "install_wheels": False, "lr": 3e-4}}
    for run, parameters in runs.items():
        sockets = tmp_path / f"sockets-{run}"
        sockets.mkdir()
        with pytest.raises(pm.PapermillExecutionError) as e:
            pm.execute_notebook(str(REPO / "kaggle" / "trm_arc2_inference_notebook.ipynb"),
                                str(tmp_path / f"{run}.ipynb"), parameters=parameters, cwd=str(tmp_path),
                                progress_bar=False, **_kernel_manager(str(sockets)))
        assert (tmp_path / "working" / "submission.json").is_file()  # the fallback was written first
        if run == "bad":
            assert e.value.ename == "ParameterError"
            assert e.value.traceback == ["error: num_augs: unknown parameter; did you mean num_aug?"]
        else:  # past the parameters: install() looked for the weights
            assert e.value.ename == "FileNotFoundError" and "no weights under" in e.value.evalue
