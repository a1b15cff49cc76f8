"""One error convention for every command-line entry point of the kit.

    from trm.errors import UserError, cli_main
    if __name__ == "__main__":
        sys.exit(cli_main(main))        # main(argv) -> exit code (None = 0)

A user error (bad option, missing or wrong input, refused output, full disk) prints ONE line,
`error: <what, where, how to fix>`, on stderr and exits with its code; no traceback, because the
traceback points into the kit while the fix is in the user's command. TRM_DEBUG=1 in the
environment, or `--debug` anywhere on the command line, re-raises instead (full traceback).
Anything else (a bug) keeps its traceback.

Exit codes (docs/reliability.md):
    0    success
    1    a check or an outside operation failed (submission INVALID, a notebook cell failed,
         a Kaggle / Hugging Face call failed, the wheelhouse did not install)
    2    usage error: bad option, unknown preset or key, missing or wrong input path, an output
         that is refused (run directory already holds a run or is locked, dataset exists)
    3    a checkpoint is unusable (incomplete, truncated, corrupt) or CUDA ran out of memory
    4    no space left on device (the previous artefact is untouched; the message says how much
         space the write needed)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

EXIT_FAILED, EXIT_USAGE, EXIT_CHECKPOINT, EXIT_DISK_FULL, EXIT_INTERRUPTED = 1, 2, 3, 4, 130
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class UserError(Exception):
    """A mistake the user can fix; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_USAGE

    @property
    def _render_traceback_(self):
        """In a notebook (IPython asks for this), the error's one line instead of a traceback into
        the kit: the cell still fails. TRM_DEBUG=1 keeps the traceback (hasattr is then False)."""
        if debug_requested([]):
            raise AttributeError("_render_traceback_")
        return lambda: [f"error: {_one_line(self)}"]


class DiskFullError(UserError):
    """A write ran out of space; the previous complete artefact is still in place."""

    exit_code = EXIT_DISK_FULL


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def is_no_space(e: BaseException) -> bool:
    """ENOSPC / EDQUOT, also when wrapped (torch.save turns a failed write into a RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _NO_SPACE:
            return True
        e = e.__cause__ or e.__context__
    return False


def free_bytes(path: str | Path) -> int | None:
    """Free space on the filesystem that holds `path` (its nearest existing ancestor)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def disk_full(path: str | Path, needed: int | None, what: str) -> DiskFullError:
    """The one-line error for a write to `path` that ran out of space (`needed`: an estimate)."""
    free = free_bytes(Path(path).parent)
    need = f"needs about {human_bytes(needed)}" if needed else "needs more space"
    has = f", {human_bytes(free)} free" if free is not None else ""
    return DiskFullError(f"no space left on device writing {path} ({what} {need}{has}); nothing was "
                         "replaced and the partial write was removed: free some space or write elsewhere")


def _one_line(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError | PermissionError | NotADirectoryError | IsADirectoryError) \
            and e.filename and not isinstance(e, UserError):
        text = f"{e.filename}: {e.strerror or e}"  # the builtin form names the path only in repr
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())  # one line, whatever the message held


def exit_code(e: BaseException) -> int | None:
    """The exit code of a user error, or None for an exception that is a bug (keeps its traceback)."""
    if isinstance(e, UserError):
        return e.exit_code
    if is_no_space(e):
        return EXIT_DISK_FULL
    if isinstance(e, FileNotFoundError | PermissionError | NotADirectoryError | IsADirectoryError):
        return EXIT_USAGE
    return None


def debug_requested(argv: list[str]) -> bool:
    return os.environ.get("TRM_DEBUG", "") not in ("", "0") or "--debug" in argv


def cli_main(fn: Callable[[list[str]], object], argv: list[str] | None = None) -> int:
    """Run `fn(argv)` (argv without `--debug`) and turn user errors into `error: ...` + exit code.

    Returns fn's int result, 0 when it returns anything else (trm.evaluate returns its metrics).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    try:
        rc = fn(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        code = exit_code(e)
        if code is None or debug:
            raise
        if is_no_space(e) and not isinstance(e, DiskFullError):
            print(f"error: no space left on device: {_one_line(e)}; free some space or write elsewhere",
                  file=sys.stderr)
        else:
            print(f"error: {_one_line(e)}", file=sys.stderr)
        return code
    return rc if isinstance(rc, int) and not isinstance(rc, bool) else 0
