"""Provenance files written into every run directory (rank 0 only).

    from trm.provenance import write_provenance
    write_provenance("runs/x", world_size=8)

- COMMANDS.txt     appended per invocation: the exact command line (the torchrun line read
                   from the launcher process when there is one), launcher, world size and
                   the distributed / threading environment variables;
- ENVIRONMENT.txt  Python, torch, CUDA, cuDNN, GPU names and count, `pip freeze`;
- TRM_COMMIT.txt   this repo's git SHA and dirty flag, and the upstream TRM commit whose
                   semantics the kit follows (trm.UPSTREAM_COMMIT).

Nothing secret or personal: $HOME is written as ~, and environment variables whose name
contains KEY, TOKEN, SECRET or PASSWORD (or a credential-looking --flag value) are dropped.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch

import trm
from trm.util import git_state

SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")
# Environment variables worth recording (exact names or prefixes).
ENV_NAMES = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
             "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
             "MKL_NUM_THREADS", "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "SLURM_JOB_ID")
ENV_PREFIXES = ("TORCHELASTIC_", "NCCL_", "TRM_", "KAGGLE_KERNEL_RUN_TYPE")


def redact(text: str) -> str:
    """$HOME -> ~ (and /home/<user>, /Users/<user> -> ~), so no home path leaves the machine."""
    home = os.path.expanduser("~")
    if home and home not in ("/", "") and len(home) > 1:
        text = text.replace(home, "~")
    return re.sub(r"/(?:home|Users)/[^/\s'\"]+", "~", text)


def _is_secret(name: str) -> bool:
    return any(w in name.upper() for w in SECRET_WORDS)


def _safe_args(args: list[str]) -> list[str]:
    """Mask the value of credential-looking flags (--api-key X, --token=X, wandb_key=X)."""
    out, hide_next = [], False
    for a in args:
        if hide_next:
            out.append("<redacted>")
            hide_next = False
            continue
        key = a.lstrip("-+").split("=", 1)[0]
        if _is_secret(key) and (a.startswith("-") or "=" in a):
            if "=" in a:
                out.append(a.split("=", 1)[0] + "=<redacted>")
            else:
                out.append(a)
                hide_next = True
            continue
        out.append(a)
    return out


def launcher() -> str:
    return "torchrun" if "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ else "python"


def _launcher_cmdline() -> list[str] | None:
    """The torchrun command line, read from the parent process (Linux /proc)."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return None
    parts = [p.decode(errors="replace") for p in raw.split(b"\0") if p]
    return parts if any("torchrun" in p or "torch.distributed.run" in p for p in parts) else None


def command_line(argv: list[str] | None = None) -> str:
    """`python -m trm.train ARGS` for this process (ARGS = argv, default sys.argv[1:]); under
    torchrun the launcher's own command line comes first. In-process calls (a notebook calling
    trm.train.train) are recorded as such."""
    if argv is None and not (sys.argv and sys.argv[0].endswith(os.path.join("trm", "train.py"))):
        return redact(f"in-process trm.train.train(config) from {shlex.join(sys.argv[:1])}")
    args = sys.argv[1:] if argv is None else list(argv)
    python_cmd = shlex.join(_safe_args([Path(sys.executable).name, "-m", "trm.train", *args]))
    outer = _launcher_cmdline() if launcher() == "torchrun" else None
    if outer:
        outer[0] = Path(outer[0]).name
        return redact(shlex.join(_safe_args(outer))) + f"\n# this worker: {redact(python_cmd)}"
    return redact(python_cmd)


def write_commands(run_dir: Path, world_size: int, argv: list[str] | None = None,
                   extra: dict | None = None) -> None:
    env = {k: v for k, v in sorted(os.environ.items())
           if (k in ENV_NAMES or k.startswith(ENV_PREFIXES)) and not _is_secret(k)}
    lines = [f"# {_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
             command_line(argv),
             f"launcher: {launcher()}", f"world_size: {world_size}",
             f"cwd: {redact(os.getcwd())}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    lines += [f"env {k}={redact(v)}" for k, v in env.items()]
    with open(run_dir / "COMMANDS.txt", "a") as f:
        f.write("\n".join(lines) + "\n\n")


def _pip_freeze() -> str:
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], capture_output=True,
                             text=True, timeout=120)
        return out.stdout if out.returncode == 0 else f"(pip freeze failed: {out.stderr.strip()[:200]})"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"(pip freeze unavailable: {e})"


def environment_report() -> str:
    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    lines = [
        f"python: {sys.version.split()[0]} ({platform.python_implementation()})",
        f"platform: {platform.platform()}",
        f"machine: {platform.machine()}, cpus: {os.cpu_count()}",
        f"torch: {torch.__version__}",
        f"torch cuda build: {torch.version.cuda}",
        f"cuda available: {cuda}",
        f"cudnn: {torch.backends.cudnn.version() if cuda else None}",
        f"nccl: {'.'.join(map(str, torch.cuda.nccl.version())) if cuda else None}",
        f"gpu count: {len(gpus)}",
    ]
    lines += [f"gpu {i}: {name}" for i, name in enumerate(gpus)]
    lines += ["", "# pip freeze", _pip_freeze().rstrip()]
    return redact("\n".join(lines)) + "\n"


def write_commit(run_dir: Path) -> dict:
    state = git_state()
    sha = state["sha"] or "unknown (not a git checkout)"
    dirty = {True: "yes (uncommitted changes to tracked files)", False: "no", None: "unknown"}[state["dirty"]]
    (run_dir / "TRM_COMMIT.txt").write_text(
        f"kit git sha: {sha}\nkit dirty: {dirty}\nkit version: {trm.__version__}\n"
        f"upstream TRM commit (semantics followed): {trm.UPSTREAM_COMMIT}\n"
        "upstream: https://github.com/SamsungSAILMontreal/TinyRecursiveModels\n")
    return state


def write_provenance(run_dir, world_size: int = 1, argv: list[str] | None = None,
                     extra: dict | None = None) -> dict:
    """Write/append the three provenance files; returns the git state. argv: the CLI arguments
    (None: read sys.argv, or record an in-process call)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_commands(run_dir, world_size, argv, extra)
    (run_dir / "ENVIRONMENT.txt").write_text(environment_report())
    return write_commit(run_dir)
