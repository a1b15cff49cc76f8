"""Small stdlib-only helpers shared by the package and the tooling scripts."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 probes without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks (weights and wheels can be GBs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def git_state(repo: str | Path | None = None) -> dict:
    """{'sha': ..., 'dirty': bool | None} of a checkout (default: the one holding this package).

    Both are None outside git or without a git binary; `dirty` ignores untracked files.
    """
    repo = Path(repo) if repo else Path(__file__).resolve().parents[1]

    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"sha": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"sha": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}
