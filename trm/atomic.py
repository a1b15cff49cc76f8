"""Files that are either the old version or the whole new one, never half of either.

Every output a kill or a full disk could truncate (submission.json, metrics, per_task.csv, the
evaluation's round files, fetched data) is written here: to a temporary file in the same directory,
flushed to disk, then renamed over the target (a rename within one filesystem is atomic). A failed
write removes the temporary and leaves the old file as it was; out of space it raises the one-line
DiskFullError (trm/errors.py) naming the path and the size.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from trm.errors import disk_full, is_no_space


def write_bytes_atomic(path: str | Path, data: bytes, what: str = "the file") -> Path:
    """Replace `path` with `data` atomically (its directory is created); `what` names the file in
    the disk-full error. The file gets mode 0644: outputs are meant to be read by others."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # data on disk before the rename makes it the real file
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if is_no_space(e):
            raise disk_full(path, len(data), what) from e
        raise
    return path


def write_json_atomic(path: str | Path, obj, indent: int | None = None) -> Path:
    """json.dumps(obj) written atomically (serialised first, so the size is known if the disk is full)."""
    return write_bytes_atomic(path, json.dumps(obj, indent=indent).encode(), "the JSON file")
