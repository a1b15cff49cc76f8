"""One source of truth per stage: every front end of a stage is checked against its dataclass
(BuildConfig, TrainConfig, TTTParams), so an option declared in one place only fails here."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from dataset_builder.__main__ import parser as build_parser
from dataset_builder.build import BuildConfig
from trm.config import TrainConfig, valid_keys
from trm.ttt_params import TTTParams

REPO = Path(__file__).resolve().parents[1]
# BuildConfig fields that only the Python API takes (in-memory or per-file sources)
API_ONLY = {"challenges_files", "task_data"}
# CLI-only flags: --challenges FILE is challenges_files={"test": FILE}; --summary-json is where the CLI
# writes the build's counts (an output, not a build setting)
CLI_ONLY = {"challenges", "summary_json"}


def _parameters(py: Path) -> dict:
    """The literal assignments of a py:percent notebook's `parameters` cell."""
    cell = py.read_text().split('# %% tags=["parameters"]', 1)[1].split("# %%", 1)[0]
    return {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(cell).body
            if isinstance(n, ast.Assign)}


def test_builder_cli_is_build_config():
    flags = {a.dest for a in build_parser()._actions if a.dest != "help"}
    fields = {f.name for f in dataclasses.fields(BuildConfig)} - API_ONLY
    assert flags == fields | CLI_ONLY


def test_build_notebook_parameters_are_build_config_fields():
    params = _parameters(REPO / "notebooks" / "01_build_dataset.py")
    defaults = BuildConfig()
    for name, value in params.items():
        assert name in BuildConfig.__dataclass_fields__, name
        assert getattr(defaults, name) == value, \
            f"01_build_dataset: {name} = {value!r} differs from BuildConfig"


def test_train_notebook_parameters_map_onto_train_config():
    params = _parameters(REPO / "notebooks" / "02_train.py")
    runner = {"preset", "n_gpus", "overrides"}  # how to run, not what to train
    unknown = set(params) - runner - set(valid_keys())
    assert not unknown, f"02_train parameters that are no TrainConfig key: {unknown}"
    assert {"data_path", "run_name"} <= set(params) and set(valid_keys()) >= {"data_path", "run_name"}
    assert TrainConfig().data_path == params["data_path"] or params["data_path"] is None


def test_sim_settings_are_notebook_parameters():
    from trmkit.sim import SIM_PARAMS

    fields = {f.name for f in dataclasses.fields(TTTParams)}
    assert set(SIM_PARAMS) <= fields, set(SIM_PARAMS) - fields


def test_evaluation_options_are_trm_evaluate_options():
    """The 03 notebook's parameters and `python -m trmkit.notebooks evaluate` are trm.evaluate's options
    (names and defaults), plus where the notebook itself goes."""
    from trm.evaluate import parser as evaluate_parser
    from trmkit.notebooks import parser as runner_parser

    opts = {a.dest: a.default for a in evaluate_parser()._actions if a.dest != "help"}
    params = _parameters(REPO / "notebooks" / "03_evaluate.py")
    assert set(params) <= set(opts), set(params) - set(opts)
    for name in ("batch_size", "device", "early_exit", "pictures"):
        assert params[name] == opts[name], name
    sub = next(a for a in runner_parser()._actions if a.dest == "cmd").choices["evaluate"]
    runner = {a.dest for a in sub._actions if a.dest != "help"} - {"out", "nb_dir"}
    assert runner <= set(opts), runner - set(opts)
    for a in sub._actions:
        if a.dest in opts and a.dest not in ("checkpoint", "data"):
            assert a.default == opts[a.dest], a.dest
