"""The real `kaggle` CLI (2.2.5) as the kit drives it: where the credentials are (never the secret
itself), the executable, a runner that masks secrets and treats printed API errors as failures."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from trm.errors import UserError


class KaggleError(UserError):
    """The kaggle CLI failed, or its answer says it did (exit 1)."""

    exit_code = 1


CLI_ERROR = re.compile(r"(?i)\berror:|authentication required|are not valid .* sources")


def kaggle_credentials() -> tuple[str | None, str | None]:
    """(where the CLI would find credentials, user name if known) -- never the secret itself.
    Order as in the CLI: tokens, KAGGLE_USERNAME/KAGGLE_KEY, kaggle.json (docs/kaggle.md)."""
    env = os.environ
    home = Path(env.get("HOME", "~")).expanduser()
    dirs = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else []
    dirs += [home / ".kaggle", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]
    user = env.get("KAGGLE_USERNAME")
    for var in ("KAGGLE_API_V1_TOKEN", "KAGGLE_API_TOKEN"):
        if env.get(var):
            return var, user
    for name in ("access_token", "access_token.txt"):
        if (home / ".kaggle" / name).is_file():
            return f"~/.kaggle/{name}", user
    if user and env.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY", user
    for d in dirs:
        kj = d / "kaggle.json"
        if kj.is_file():
            if kj.stat().st_mode & 0o077:
                print(f"warning: {kj} is readable by others; run chmod 600 {kj}")
            try:
                user = user or json.loads(kj.read_text()).get("username")
            except (OSError, ValueError):
                pass
            return str(kj), user
    return None, user


NO_CREDENTIALS = ("no Kaggle credentials found, so nothing was pushed: set KAGGLE_USERNAME and KAGGLE_KEY "
                  "(your API key from kaggle.com/settings), or write ~/.kaggle/kaggle.json "
                  '{"username": ..., "key": ...} and chmod 600 ~/.kaggle/kaggle.json, or set '
                  "KAGGLE_API_TOKEN (a token value or a file path; tokens start with KGAT_) plus --owner; "
                  "then rerun the same command")


# ---------------------------------------------------------------- the kaggle CLI

def kaggle_exe() -> str:
    beside = Path(sys.executable).with_name("kaggle")
    exe = str(beside) if beside.exists() else shutil.which("kaggle")
    if not exe:
        raise KaggleError("the kaggle CLI is not installed (pip install kaggle==2.2.5 kagglesdk==0.1.38 six)")
    return exe


def _mask(text: str) -> str:
    for var in ("KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_API_V1_TOKEN", "HF_TOKEN"):
        v = os.environ.get(var)
        if v and len(v) >= 6:
            text = text.replace(v, "***")
    return text


def run_cli(args: list[str], check: bool = True) -> tuple[int, str]:
    """Run `kaggle ARGS`, echoing its output line by line as it comes (progress bars dropped,
    secrets masked: a `--wait` shows its status lines live, for hours); with check, a non-zero
    exit OR a printed error line raises KaggleError. Returns (exit code, the whole output)."""
    print("$ kaggle " + " ".join(args), flush=True)
    # stderr into stdout: one stream, in the order the CLI wrote it; text mode turns a progress
    # bar's carriage returns into line ends, so each redraw is a line holding "%|" (dropped)
    # PYTHONUNBUFFERED: the CLI writes to a pipe here, which Python would otherwise block-buffer
    proc = subprocess.Popen([kaggle_exe(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    for line in proc.stdout:
        line = _mask(line.rstrip("\n"))
        lines.append(line)
        if line.strip() and "%|" not in line:
            print("  " + line, flush=True)
    rc = proc.wait()
    out = "\n".join(lines)
    if check and (rc or CLI_ERROR.search(out)):
        raise KaggleError(f"`kaggle {args[0]} {args[1]}` failed (exit {rc})")
    return rc, out


def dataset_exists(ref: str) -> bool:
    rc, out = run_cli(["datasets", "status", ref], check=False)
    if rc == 0 and not CLI_ERROR.search(out):
        return True
    if "not found" in out.lower() or "404" in out:
        return False
    raise KaggleError(f"cannot tell whether {ref} exists (`kaggle datasets status` exit {rc})")
