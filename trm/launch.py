"""Child processes whose output must show up live: the fine-tune under torchrun (the competition
notebook) and multi-GPU training from the training notebook. Standard library only (the
competition notebook imports it before any wheel is installed).

    rc = stream(torchrun_command(4, ["trm.finetune", "spec.json"]), timeout=3600)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def torchrun_command(n_procs: int, module_args: list[str]) -> list[str]:
    """`python -m MODULE ARGS` for one process; torchrun --standalone over n_procs otherwise, with
    this interpreter's torch (the torchrun script beside it, else `python -m torch.distributed.run`)."""
    if n_procs <= 1:
        return [sys.executable, "-m", *module_args]
    exe = Path(sys.executable).with_name("torchrun")
    launcher = [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", f"--nproc-per-node={n_procs}", "-m", *module_args]


def stream(cmd: list[str], env: dict | None = None, timeout: float | None = None) -> int:
    """Run cmd in its own process group, echo its output line by line (a notebook shows a child's
    output only this way) and return its exit code. At `timeout` seconds, or when the caller is
    interrupted, the whole group (torchrun and its workers) is killed; a timeout returns -9."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            start_new_session=True, bufsize=1)

    def kill(sig=signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    timer = None
    if timeout is not None:
        def on_timeout() -> None:
            print(f"[{time.strftime('%H:%M:%S')}] deadline reached: killing {' '.join(cmd[:6])}", flush=True)
            kill()

        timer = threading.Timer(max(timeout, 1.0), on_timeout)
        timer.daemon = True
        timer.start()
    try:
        for line in proc.stdout:
            print(line, end="", flush=True)
        return proc.wait()
    except BaseException:  # KeyboardInterrupt in a notebook cell: take the children down too
        kill(signal.SIGTERM)
        proc.wait()
        raise
    finally:
        if timer is not None:
            timer.cancel()
