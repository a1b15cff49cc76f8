"""The CI guard in tests/conftest.py: with TRM_NO_SKIPS=1 a skipped test fails the pytest run, also
on pytest-xdist workers as `make test` runs it; and the deselected `cuda` tests are counted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _pytest(tmp_path: Path, no_skips: bool, workers: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRM_NO_SKIPS"}
    if no_skips:
        env["TRM_NO_SKIPS"] = "1"
    dist = ["-n", str(workers), "--dist", "loadfile"] if workers else []
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *dist,
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("workers", [0, 2], ids=["one process", "two xdist workers"])
def test_skip_fails_only_under_ci_guard(tmp_path, workers):
    import torch

    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text("import pytest\n\ndef test_a():\n    pytest.skip('no data')\n\n"
                                        "def test_b():\n    pass\n")
    (tmp_path / "test_y.py").write_text("import pytest\n\n@pytest.mark.cuda\ndef test_gpu():\n    pass\n")
    assert _pytest(tmp_path, no_skips=False, workers=workers).returncode == 0
    guarded = _pytest(tmp_path, no_skips=True, workers=workers)
    assert guarded.returncode == 1, guarded.stdout
    assert "TRM_NO_SKIPS: 1 test(s) skipped" in guarded.stdout and "test_x.py::test_a" in guarded.stdout
    if torch.cuda.is_available():
        assert "2 passed, 1 skipped" in guarded.stdout, guarded.stdout
    else:
        assert "1 cuda test(s) deselected: no CUDA device visible" in guarded.stdout, guarded.stdout
    (tmp_path / "test_x.py").write_text("def test_b():\n    pass\n")
    assert _pytest(tmp_path, no_skips=True, workers=workers).returncode == 0
