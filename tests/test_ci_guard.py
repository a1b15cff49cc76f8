"""The CI guard in tests/conftest.py: with TRM_NO_SKIPS=1 a skipped test fails the pytest run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def _pytest(tmp_path: Path, no_skips: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRM_NO_SKIPS"}
    if no_skips:
        env["TRM_NO_SKIPS"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True)


def test_skip_fails_only_under_ci_guard(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text("import pytest\n\ndef test_a():\n    pytest.skip('no data')\n\n"
                                        "def test_b():\n    pass\n")
    assert _pytest(tmp_path, no_skips=False).returncode == 0
    guarded = _pytest(tmp_path, no_skips=True)
    assert guarded.returncode == 1, guarded.stdout
    assert "TRM_NO_SKIPS: 1 test(s) skipped" in guarded.stdout and "test_x.py::test_a" in guarded.stdout
    (tmp_path / "test_x.py").write_text("def test_b():\n    pass\n")
    assert _pytest(tmp_path, no_skips=True).returncode == 0
