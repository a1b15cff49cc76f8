"""Model card (README.md with Hugging Face YAML front matter) for an exported TRM checkpoint.

    from trmkit.model_card import find_metrics, render_card
    metrics, source, note = find_metrics(ckpt_dir, meta)
    Path("README.md").write_text(render_card(meta, metrics, name="trm-arc2", ...))

Only solve rates reach `model-index`: pass@K (upstream's per-task macro average) and the Kaggle
score (the official micro average over test outputs), as measured by `trm.evaluate` in its
metrics.json. Token or row accuracy is never reported as a result (docs/kaggle.md: the lessons of
a reproduction that scored 0), and
metrics measured on another checkpoint (a different step, an ensemble) are refused (lesson 4).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from trm.paths import runs_root

PASS_KEY = re.compile(r"^pass@(\d+)$")
ARC_PAPER = "https://arxiv.org/abs/2510.04871"
UPSTREAM = "https://github.com/SamsungSAILMontreal/TinyRecursiveModels"


def solve_rates(metrics: dict) -> list[tuple[str, str, float]]:
    """(metric type, display name, value) for each measured solve rate; None values are skipped."""
    out = []
    for key, value in metrics.items():
        m = PASS_KEY.match(key)
        if m and isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((key, f"pass@{m.group(1)} (per-task macro average)", float(value)))
    score = metrics.get("kaggle_score")
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        out.append(("kaggle_score", "Kaggle score (official; micro average over test outputs)", float(score)))
    out.sort(key=lambda t: (t[0] != "pass@2", t[0] != "kaggle_score", t[0]))  # headline first
    return out


def find_metrics(ckpt: Path, meta: dict, explicit: Path | None = None) -> tuple[dict | None, str | None, str]:
    """metrics.json of an evaluation of exactly this checkpoint: `explicit`, else where the kit writes
    it: <run>/evaluate/<step_N>/ (make evaluate), the checkpoint dir, <run>/ and <run>/eval/ (up to 3
    levels up), $TRM_RUNS_DIR/evaluate/<step_N>/. Files measured on another step, another checkpoint
    or an ensemble are skipped. Returns (metrics, source, note)."""
    ckpt = Path(ckpt).resolve()
    cands = [explicit] if explicit else [ckpt / "metrics.json"] + [
        p for d in list(ckpt.parents)[:3]
        for p in (d / "evaluate" / ckpt.name / "metrics.json", d / "metrics.json",
                  d / "eval" / "metrics.json")
    ] + [runs_root() / "evaluate" / ckpt.name / "metrics.json"]
    notes = []
    for path in cands:
        if not path.is_file():
            continue
        metrics = json.loads(path.read_text())
        step, m_step, named = meta.get("step"), metrics.get("step"), metrics.get("checkpoint")
        if (metrics.get("n_checkpoints") or 1) > 1:
            notes.append(f"{path} scores an ensemble of {metrics['n_checkpoints']} checkpoints")
        elif step is not None and m_step is not None and int(step) != int(m_step):
            notes.append(f"{path} was measured at step {m_step}, this checkpoint is step {step}")
        elif named and Path(named).name != ckpt.name and Path(named).resolve() != ckpt:
            notes.append(f"{path} evaluated {named}, not {ckpt.name}")
        else:
            return metrics, str(path), ""
    return None, None, ("; ".join(notes)
                        or "no metrics.json found for this checkpoint (run `make evaluate` first)")


# Licence identifiers of the Hub's model-card metadata the kit may meet; any other is "other" + its name.
HF_LICENSES = ("mit", "apache-2.0", "cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "bsd-3-clause")


def render_card(meta: dict, metrics: dict | None, *, name: str, dataset: str = "ARC-AGI-2 evaluation",
                provenance: list[str] = (), metrics_note: str = "", license: str = "MIT",
                trained_git: dict | None = None) -> str:
    """meta: the slim export's meta.json; trained_git: the source checkpoint's git record (the
    export's own `git` is the tree at export time, not the one that trained it)."""
    rates = solve_rates(metrics or {})
    results = [EvalResult(task_type="other", task_name="ARC-AGI abstract reasoning", dataset_type="arc-agi-2",
                          dataset_name=dataset, dataset_split="evaluation", metric_type=mtype,
                          metric_name=label, metric_value=value) for mtype, label, value in rates]
    hf = license.lower() if license.lower() in HF_LICENSES else "other"  # the Hub's own identifiers
    data = ModelCardData(license=hf, license_name=None if hf != "other" else license, library_name="pytorch",
                         tags=["trm", "arc-agi", "arc-prize"],
                         model_name=name, eval_results=results or None)
    cfg = meta.get("model_config") or {}
    def commit(g: dict | None) -> str:
        g = g or {}
        return f"{g.get('sha') or 'unknown'}" + (" (uncommitted changes)" if g.get("dirty") else "")
    lines = [f"---\n{data.to_yaml()}\n---", "", f"# {name}", "",
             f"A Tiny Recursive Model ([TRM]({ARC_PAPER}), [upstream]({UPSTREAM})) "
             "checkpoint exported by the "
             "TRM Kaggle kit (`trm.checkpoint.export_slim`): weights without the per-puzzle embedding table, "
             "plus its mean row for new tasks.", "", "## Results", ""]
    if rates:
        n = (metrics or {}).get("n_test_outputs")
        lines += (["| metric | value |", "|---|---|"]
                  + [f"| {label} | {value:.4f} |" for _, label, value in rates])
        lines += ["", f"Measured by `trm.evaluate` on {dataset}"
                  + (f" ({n} test outputs)" if n else "") + "."]
    else:
        lines += ["No solve rate was measured for this checkpoint"
                  + (f": {metrics_note}" if metrics_note else "") + "."]
    lines += ["", "Token/cell accuracy is not a solve rate and is deliberately not reported here.", "",
              "## Checkpoint", "",
              f"- step: {meta.get('step', 'unknown')}",
              f"- weights: {meta.get('weights', 'unknown')}",
              f"- trained at kit commit: {commit(trained_git)}",
              f"- exported at kit commit: {commit(meta.get('git'))}",
              f"- puzzle rows in the source checkpoint: {meta.get('source_puzzle_rows', 'unknown')}"]
    if cfg:
        lines += ["", "Model config:", "", "```json", json.dumps(cfg, indent=1, sort_keys=True), "```"]
    lines += ["", "## Loading", "", "```python",
              "from trm.checkpoint import load_checkpoint",
              "# slim: the puzzle table is rebuilt for your dataset, every row = the mean row",
              "model, meta = load_checkpoint('path/to/this/folder', dataset_dir='data/your-build')", "```"]
    if provenance:
        lines += ["", "## Provenance", "", *[f"- `{p}`" for p in provenance]]
    return "\n".join(lines) + "\n"
