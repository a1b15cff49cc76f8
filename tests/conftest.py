"""Shared test fixtures: where the golden data and the ARC JSON live.

TRM_SHARED_DIR (default ../shared beside the repo) holds spec/, golden/ and data/;
TRM_GOLDEN_DIR (default $TRM_SHARED_DIR/golden) can point the golden tests at another
golden set of identical structure. Tests that need them skip with a reason when absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("TRM_SHARED_DIR", REPO.parent / "shared")).resolve()


def golden_dir() -> Path:
    return Path(os.environ.get("TRM_GOLDEN_DIR", shared_dir() / "golden")).resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def golden() -> Path:
    g = golden_dir()
    if not g.is_dir():
        pytest.skip(f"golden data not found at {g} (set TRM_GOLDEN_DIR or TRM_SHARED_DIR)")
    return g


@pytest.fixture(scope="session")
def arc_data() -> Path:
    d = shared_dir() / "data"
    if not d.is_dir():
        pytest.skip(f"ARC JSON not found at {d} (set TRM_SHARED_DIR)")
    return d


def pytest_sessionfinish(session, exitstatus):
    """With TRM_NO_SKIPS=1 (set by .ci/run) a skipped test fails the run: in CI every test must
    run (a missing dev package or missing ../shared data would otherwise pass silently)."""
    if not os.environ.get("TRM_NO_SKIPS") or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.ensure_newline()
        reporter.write_line(f"TRM_NO_SKIPS: {len(skipped)} test(s) skipped, which CI does not allow:", red=True)
        for r in skipped:
            reporter.write_line(f"  {r.nodeid}: {r.longrepr[-1] if isinstance(r.longrepr, tuple) else r.longrepr}")
        session.exitstatus = 1
