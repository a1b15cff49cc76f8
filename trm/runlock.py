"""A run directory belongs to one run, and one process trains in it at a time.

    check_run_dir(run_dir, resume=False)   # a fresh run refuses a directory that holds a run
    lock = RunLock.acquire(run_dir)        # refuses while another live process trains there
    ...
    lock.release()

The lock is `<run_dir>/train.lock`, created with O_CREAT|O_EXCL (atomic: of two processes, one
wins) and holding {pid, host, started}. A lock whose process is gone -- same host, pid not
alive, e.g. after kill -9 or a crashed notebook kernel -- is stale and taken over, so it never
blocks `--resume`. A lock from another host cannot be checked from here and is left alone (the
message says how to remove it). Under torchrun only rank 0 takes it (trm.train._prepare).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import time
import uuid
from pathlib import Path

from trm.errors import UserError
from trm.paths import runs_root
from trm.util import pid_alive

LOCK_NAME = "train.lock"
RUN_MARKERS = ("config.json", "checkpoints", "metrics.jsonl")  # what a run leaves in its directory
_UNREADABLE_GRACE_S = 30  # a lock file being written right now is briefly empty


class RunDirError(UserError):
    """The run directory holds another run, or another process is training in it (exit 2)."""


def default_run_name(preset: str | None) -> str:
    """<preset>-<UTC time>-<8 hex>: unique even for runs started in the same second (32 random
    bits: a clash among 50 names started together has odds of about 3 in 10 million)."""
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{preset or 'run'}-{stamp}-{uuid.uuid4().hex[:8]}"


def run_dir_of(resume: str | Path) -> Path | None:
    """The run a --resume target belongs to: the folder itself when it holds checkpoints/, the run
    of a checkpoint under <run>/checkpoints/, else None (a checkpoint outside any run)."""
    p = Path(resume)
    if (p / "checkpoints").is_dir():
        return p
    return p.parent.parent if p.parent.name == "checkpoints" else None


def place_run(cfg) -> None:
    """Fill cfg.run_dir and cfg.run_name by one rule (the trainer and the notebook runner both use it):
    a --resume target's run, else runs/<run_name>; a missing name is the folder's, else a new one."""
    if cfg.run_dir is None and cfg.resume and run_dir_of(cfg.resume) is not None:
        cfg.run_dir = str(run_dir_of(cfg.resume))
    if cfg.run_name is None:
        cfg.run_name = Path(cfg.run_dir).name if cfg.run_dir else default_run_name(cfg.preset)
    if cfg.run_dir is None:
        cfg.run_dir = str(runs_root() / cfg.run_name)


def check_run_dir(run_dir: str | Path, resume: bool) -> None:
    """A fresh run (no --resume) may not write into a directory that already holds a run."""
    run_dir = Path(run_dir)
    found = [m for m in RUN_MARKERS if (run_dir / m).exists()]
    if found and not resume:
        raise RunDirError(f"run directory {run_dir} already holds a run ({', '.join(found)}): "
                          "continue it with "
                          f"--resume {run_dir}, or choose another run_name (or omit it for a new unique one)")


def _read(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text())
        return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def _is_stale(path: Path, holder: dict | None) -> bool:
    if holder is None:  # unreadable: stale only once it is clearly not a lock being written
        try:
            return time.time() - path.stat().st_mtime > _UNREADABLE_GRACE_S
        except FileNotFoundError:
            return True
    return holder.get("host") == socket.gethostname() and not pid_alive(holder["pid"])


class RunLock:
    def __init__(self, path: Path, info: dict, created_dir: bool = False):
        self.path, self.info = path, info
        self.created_dir = created_dir  # the run dir did not exist: release removes it if left empty

    @classmethod
    def acquire(cls, run_dir: str | Path) -> RunLock:
        run_dir = Path(run_dir)
        created = not run_dir.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / LOCK_NAME
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        for _ in range(3):  # a stale lock is set aside, then the exclusive create is tried again
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read(path)
                if not _is_stale(path, holder):
                    who = (f"process {holder['pid']} on {holder.get('host')} since {holder.get('started')}"
                           if holder else "a process that is starting")
                    raise RunDirError(f"run directory {run_dir} is locked by {who} ({path}): wait for that "
                                      "run to end, or use another run_name; if that process is gone, "
                                      f"delete {path}") from None
                cls._set_aside(path, holder)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
            return cls(path, info, created)
        raise RunDirError(f"run directory {run_dir}: could not take {path} (other processes keep "
                          "taking it); try again")

    @staticmethod
    def _set_aside(path: Path, holder: dict | None) -> None:
        """Remove a stale lock, unless a live process replaced it meanwhile. The rename is atomic:
        we then own the file we look at and check it is still the stale one before deleting."""
        aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return  # someone else removed it: just try again
        if _read(aside) == holder or holder is None:
            print(f"run lock: removed a stale lock of a process that is gone ({holder})", flush=True)
            aside.unlink(missing_ok=True)
            return
        try:  # we took a fresh lock away: put it back (link fails if yet another one exists)
            os.link(aside, path)
        except FileExistsError:
            pass
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        """Delete the lock if it is still ours (never another process's)."""
        if _read(self.path) == self.info:
            self.path.unlink(missing_ok=True)
        if self.created_dir:  # a run that failed before writing anything (e.g. an unusable
            try:  # --load_checkpoint) leaves no directory behind; rmdir removes empty ones only
                self.path.parent.rmdir()
            except OSError:
                pass

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
