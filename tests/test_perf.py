"""The performance model (trmkit.perf) and the GPU table (trmkit.gpus): names, FLOPs, the rows of the
hidden set, the roofline's scaling rules and the notebook's budget on the projected GPUs.

    .venv/bin/pytest -q tests/test_perf.py

No timing here: the figures come from the committed H200 results (bench/results/) and the public
test file; the benches print figures (docs/performance.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trm import finetune
from trm.model import TRM, ModelConfig, count_parameters
from trm.ttt_params import TTTParams
from trmkit import perf
from trmkit.gpus import BY_MODEL, gpu_spec, peak_flops

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, model", [
    ("NVIDIA L4", "L4"), ("NVIDIA L40S", "L40S"), ("NVIDIA L40", "L40"), ("Tesla T4", "T4"),
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA H100 NVL", "H100 NVL"),
    ("NVIDIA H200", "H200 SXM"), ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA A100-SXM4-80GB", "A100 SXM 80GB"),
    ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB"), ("NVIDIA A10", "A10"), ("  nvidia   l4 ", "L4"),
    ("Tesla P100-PCIE-16GB", "P100 PCIe 16GB"),
])
def test_gpu_names_match_the_exact_model(name, model):
    assert gpu_spec(name).model == model


@pytest.mark.parametrize("name", ["NVIDIA A10G", "NVIDIA GH200 480GB", "NVIDIA H100", "NVIDIA L4 Ultra",
                                  "NVIDIA RTX 4090", "cpu", "", None])
def test_unknown_gpus_are_unknown_not_guessed(name):
    assert gpu_spec(name) is None and peak_flops(name) is None


def test_peaks_and_sustained_clock():
    assert peak_flops("NVIDIA L40S") == 362e12 and peak_flops("NVIDIA L4") == 121e12
    h100 = [peak_flops(f"NVIDIA H100 {v}") for v in ("PCIe", "NVL", "80GB HBM3")]
    assert h100[0] < h100[1] < h100[2]
    assert BY_MODEL["T4"].tflops_sustained() == pytest.approx(24, abs=0.2)  # 65 at 585 of 1590 MHz
    assert BY_MODEL["H200 SXM"].tflops_sustained() == BY_MODEL["H200 SXM"].tflops  # no clocks: no range
    assert not BY_MODEL["T4"].flash and BY_MODEL["L4"].flash


def test_flops_and_parameters_of_the_paper_config():
    cfg = ModelConfig()
    assert perf.dense_parameters(cfg) == count_parameters(TRM(cfg)) == 6_829_058  # upstream's num_params
    d, S, V = 512, 916, 12
    f_net = 2 * S * (8 * d * d + 6 * d * 1536 + 4 * S * d)  # the README's formula, written out
    assert perf.train_flops_per_row(cfg) == (3 * 5 + 2 * 5) * f_net + 6 * 900 * d * V
    assert perf.eval_flops_per_row(cfg) == 16 * (15 * f_net + 2 * 900 * d * V)
    # the fine-tune's reserve rule counts an evaluation row as halt x H/(H+2) training rows of FLOPs
    ratio = perf.eval_flops_per_row(cfg) / perf.train_flops_per_row(cfg)
    assert ratio == pytest.approx(16 * 3 / 5, rel=2e-3)


def _test_file(arc_data) -> Path:
    return arc_data / "arc-prize-2025" / "arc-agi_test_challenges.json"


def _counts(test_file: Path) -> tuple[int, int, int]:
    """(tasks, demo pairs, test inputs) of a challenges file, read from its JSON."""
    tasks = json.loads(test_file.read_text())
    return (len(tasks), sum(len(t["train"]) for t in tasks.values()),
            sum(len(t["test"]) for t in tasks.values()))


def test_hidden_set_rows_from_the_test_file(arc_data, tmp_path):
    """Fine-tune rows: epochs x demo pairs; evaluation rows: test inputs x (num_aug + 1) -- on a file
    of known counts, and on the public test file, read from its JSON."""
    demo = [{"input": [[1]], "output": [[2]]}]
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"a": {"train": demo * 3, "test": [{"input": [[1]]}] * 2},
                                 "b": {"train": demo * 4, "test": [{"input": [[1]]}]}}))
    rows = perf.hidden_set_rows(small, 10, 4)
    assert (rows["source"]["tasks"], rows["source"]["demo_pairs"], rows["source"]["test_inputs"]) == (2, 7, 3)
    assert (rows["finetune_rows"], rows["eval_rows"]) == (70, 15)
    n_tasks, n_demo, n_inputs = _counts(_test_file(arc_data))
    rows = perf.hidden_set_rows(_test_file(arc_data), 2000, 128)
    assert ((rows["source"]["tasks"], rows["source"]["demo_pairs"], rows["source"]["test_inputs"])
            == (n_tasks, n_demo, n_inputs))
    assert len(rows["source"]["sha256"]) == 64
    assert rows["finetune_rows"] == 2000 * n_demo and rows["eval_rows"] == n_inputs * 129


def test_an_epoch_is_the_demo_pairs(tmp_path):
    """What hidden_set_rows assumes: trm.engine's rows per epoch (groups x mean examples per puzzle)
    on the notebook's dataset are the tasks' demo pairs, whatever num_aug."""
    from trm import ttt

    flip = [{"input": [[3, 4]], "output": [[4, 3]]}, {"input": [[5, 6, 7]], "output": [[7, 6, 5]]},
            {"input": [[1], [2]], "output": [[2], [1]]}]
    tasks = {"aaaa0001": {"train": [{"input": [[1, 0]], "output": [[2, 0]]}] * 2, "test": [{"input": [[1]]}]},
             "bbbb0002": {"train": flip, "test": [{"input": [[8]]}]}}
    (tmp_path / "challenges.json").write_text(json.dumps(tasks))
    for num_aug in (2, 5):
        built = ttt.build_ttt_dataset(tmp_path / "challenges.json", tmp_path / f"d{num_aug}", num_aug=num_aug,
                                      repo=REPO)
        meta = json.loads((tmp_path / f"d{num_aug}" / "train" / "dataset.json").read_text())
        assert meta["total_groups"] * meta["mean_puzzle_examples"] == pytest.approx(5)
        assert built["splits"]["test"]["examples"] == 2 * (num_aug + 1)


def test_roofline_scales_each_class_by_what_bounds_it():
    cfg = ModelConfig()
    h200, l4, t4 = BY_MODEL["H200 SXM"], BY_MODEL["L4"], BY_MODEL["T4"]
    same = perf.class_factors(cfg, 96, h200, h200, slow=False)
    assert all(v == pytest.approx(1.0) for v in same.values())
    fast = perf.class_factors(cfg, 96, h200, l4, slow=False)
    assert fast["fused_triton"] == pytest.approx(4800 / 300)  # memory-bound: bandwidth ratio
    assert fast["attention"] == pytest.approx(989 / 121)  # flash attention: compute-bound (S/2 > 403)
    # K = 512: on the L4 (403 FLOP/B) the o projection is memory-bound, so the matmuls lose more
    # than the compute ratio (on the H200, 206 FLOP/B, all four are compute-bound)
    assert 989 / 121 < fast["matmul"] < 1.1 * 989 / 121
    slow = perf.class_factors(cfg, 96, h200, t4, slow=True)
    assert slow["matmul"] == pytest.approx(989 / t4.tflops_sustained())
    assert slow["attention"] == pytest.approx(perf.NO_FLASH_SLOWDOWN * 989 / t4.tflops_sustained())
    assert perf.class_factors(cfg, 96, h200, t4, slow=False)["attention"] == pytest.approx(989 / 65)


def _committed_results() -> tuple[Path, Path]:
    """The GPU results the CLI projects from by default: the newest committed pair (trmkit.perf.newest)."""
    gpu, ttt_ = perf.newest("gpu-2*.json"), perf.newest("gpu-ttt-*.json")
    assert gpu and ttt_, "no committed GPU results in bench/results/"
    return gpu, ttt_


def _committed_reference() -> perf.Reference:
    gpu, ttt_ = _committed_results()
    return perf.reference_from(json.loads(gpu.read_text()), json.loads(ttt_.read_text()),
                               names=(gpu.name, ttt_.name))


def test_reference_figures_are_the_results_files(tmp_path):
    """reference_from takes the fine-tune's speed and the evaluation's from the notebook results
    JSON: change them there and the reference follows."""
    gpu, ttt_ = _committed_results()
    gpu_json, ttt_json = json.loads(gpu.read_text()), json.loads(ttt_.read_text())
    ref = perf.reference_from(gpu_json, ttt_json)
    run = ttt_json["runs"]["bfloat16"]
    run["finetune"]["rows_per_s"] *= 2
    run["eval_seconds"] *= 3
    changed = perf.reference_from(gpu_json, ttt_json)
    assert changed.train_s_per_row == pytest.approx(ref.train_s_per_row / 2)
    assert changed.eval_s_per_row == pytest.approx(ref.eval_s_per_row * 3)
    assert changed.profile_s == ref.profile_s and changed.gpu == ref.gpu


def test_projection_of_the_committed_h200_run(arc_data):
    """The ranges docs/performance.md quotes, and the notebook's clock-fitted fine-tune on each end:
    4xL4 reaches the max_epochs cap at both ends; on T4x2's slow end the cap cannot fit and the
    fine-tune is cut by the evaluation reserve -- late, not hours early -- with every round of the
    evaluation done before the deadline, and at least one were the evaluation 3x slower."""
    ref = _committed_reference()
    params = TTTParams().resolved()  # the notebook's defaults
    rows = perf.hidden_set_rows(_test_file(arc_data), params.epoch_limit, params.num_aug)
    out = perf.project(ref, ModelConfig(), rows, params)
    l4, t4 = out["4xL4"], out["T4x2"]
    assert l4["hours_range"][0] < l4["hours_range"][1] < t4["hours_range"][1]
    assert t4["hours_range"][0] < t4["hours_range"][1]
    for end in ("fast", "slow"):
        assert l4[end]["budget"]["finetune_stopped_by"] == "cap" and l4[end]["budget"]["fits"]
    assert t4["fast"]["budget"]["finetune_stopped_by"] == "cap" and t4["fast"]["budget"]["fits"]
    worst = t4["slow"]
    assert worst["total_h"] > params.budget_hours  # the defaults do not fit at T4's base clock ...
    assert worst["budget"]["finetune_stopped_by"] == "eval reserve"  # ... and the cut
    assert worst["budget"]["fits"]  # ends the evaluation before the deadline
    assert worst["budget"]["epochs_done"] < params.epoch_limit
    for t in (l4, t4):
        for end in ("fast", "slow"):
            b = t[end]["budget"]
            assert b["rounds_done"] == b["rounds"] and min(b["rounds_done_if_eval_slower"].values()) >= 1
            assert b["finetune_stopped_by"] == "cap" or b["margin_h"] <= 2.0  # no hours left unused


def test_without_the_measured_slowdown_the_worst_case_evaluation_is_killed(arc_data, monkeypatch):
    """Why the reserve counts EVAL_SLOWDOWN: predicting the evaluation from its FLOPs alone, the
    fine-tune on T4x2's slow end runs so long that the evaluation overruns the deadline: its last
    rounds are cut (trm.anytime keeps the rounds before them)."""
    monkeypatch.setattr(finetune, "EVAL_SLOWDOWN", 1.0)
    params = TTTParams().resolved()  # the notebook's defaults
    rows = perf.hidden_set_rows(_test_file(arc_data), params.epoch_limit, params.num_aug)
    worst = perf.project(_committed_reference(), ModelConfig(), rows, params)["T4x2"]["slow"]["budget"]
    assert worst["finetune_stopped_by"] == "eval reserve" and not worst["fits"]
    assert 1 <= worst["rounds_done"] < worst["rounds"]


def test_cli_writes_the_projection(arc_data, tmp_path, capsys):
    out = tmp_path / "p.json"
    argv = ["--test-file", str(_test_file(arc_data)), "--set", "num_aug=64", "--out", str(out)]
    assert perf.main(argv) == 0
    doc = json.loads(out.read_text())
    n_inputs = _counts(_test_file(arc_data))[2]
    assert doc["params_changed"] == {"num_aug": "64"} and doc["rows"]["eval_rows"] == n_inputs * 65
    gpu, ttt_ = _committed_results()  # by default the newest committed results
    sources = doc["reference"]["sources"]
    assert (sources["profile"], sources["notebook"]) == (gpu.name, ttt_.name)
    assert set(doc["targets"]) == {"4xL4", "T4x2"} and "T4x2:" in capsys.readouterr().out
