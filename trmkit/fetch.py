"""Download ARC JSON: upstream TRM's bundled files, or a Kaggle competition's data.

    python -m trmkit.fetch upstream --out data/raw
        the 10 files kaggle/combined/arc-agi_{training,evaluation,training2,evaluation2,
        concept}_{challenges,solutions}.json of SamsungSAILMontreal/TinyRecursiveModels at
        commit e7b6871 (the inputs behind upstream's identifiers), checked against their
        sha256; then build with `--input-file-prefix data/raw/arc-agi`.
    python -m trmkit.fetch kaggle [--competition SLUG] --out DIR
        `kaggle competitions download` + unzip (needs Kaggle credentials); then build
        with `--kaggle-dir DIR`.

Files are written atomically (temporary name, then rename); files already present with
the right hash are kept. Errors are one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from trm.atomic import write_bytes_atomic
from trm.competition import COMPETITION
from trm.errors import UserError, cli_main
from trm.util import sha256_file
from trmkit.kaggle_cli import kaggle_credentials

UPSTREAM_REPO = "SamsungSAILMontreal/TinyRecursiveModels"
UPSTREAM_COMMIT = "e7b68717f0a6c4cbb4ce6fbef787b14f42083bd9"
UPSTREAM_DIR = "kaggle/combined"
UPSTREAM_SUBSETS = ("training", "evaluation", "training2", "evaluation2", "concept")
# sha256 of upstream's files at UPSTREAM_COMMIT (same bytes as shared/data/arc-agi/).
UPSTREAM_SHA256 = {
    "arc-agi_concept_challenges.json": "4e60bd1de956c2519c3236ba9f2c352c971d5971bfc568ceafa716dd9b1a91fd",
    "arc-agi_concept_solutions.json": "3ec5e95e416e49c85dac28475fc5b73f6998d13b7e91ff0219eee48881c327ee",
    "arc-agi_evaluation2_challenges.json": "e7c62a4bd211867c6b538f66b8013b81f299663c82ca062f49a52bf439d6e4e8",
    "arc-agi_evaluation2_solutions.json": "84be4f4f39b79e82c36d565fc878830988b094917f052ee7069aef30b33ca8f1",
    "arc-agi_evaluation_challenges.json": "2b05f8f7d33b73fdbefd69914c399e9409d1949c7f16aabc78e677443a64b208",
    "arc-agi_evaluation_solutions.json": "629622b0eecf42c6cb4da628955ef76ec43214f0d00081f8cf63082ade496c52",
    "arc-agi_training2_challenges.json": "779eaba89790ebad9af02514a7efc0aefaf2cf8236f046a31bbf8b9ec48f20f5",
    "arc-agi_training2_solutions.json": "9f07a38bd25af5e83aa5bf85c5cb1a1fefdb30f6a755256fa65429e697ca97f9",
    "arc-agi_training_challenges.json": "5b02a4753e9088134744d952b048a03f6f23abf4eb6c04e3f27822cf3d439634",
    "arc-agi_training_solutions.json": "47212ad04ef4211221ac6141cba8c8d425e20e90da90ace575ef286c5f992534",
}
CREDENTIALS_HELP = (
    "no Kaggle credentials found: set KAGGLE_USERNAME and KAGGLE_KEY, or KAGGLE_API_TOKEN, "
    "or create ~/.kaggle/kaggle.json (or $KAGGLE_CONFIG_DIR/kaggle.json, or ~/.kaggle/access_token) "
    "from https://www.kaggle.com/settings -> API; and accept the competition's rules on its page"
)


class FetchError(UserError):
    """A download or extraction that cannot go ahead (exit 2)."""


def upstream_files() -> list[tuple[str, str]]:
    """[(file name, raw.githubusercontent URL)] of the 10 upstream JSON files."""
    base = f"https://raw.githubusercontent.com/{UPSTREAM_REPO}/{UPSTREAM_COMMIT}/{UPSTREAM_DIR}"
    names = [f"arc-agi_{s}_{kind}.json" for s in UPSTREAM_SUBSETS for kind in ("challenges", "solutions")]
    return [(name, f"{base}/{name}") for name in names]




def fetch_upstream(out: Path, quiet: bool = False, timeout: float = 60.0) -> list[Path]:
    written = []
    for name, url in upstream_files():
        dest = out / name
        want = UPSTREAM_SHA256[name]
        if dest.is_file() and sha256_file(dest) == want:
            written.append(dest)
            continue
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                data = resp.read()
        except urllib.error.HTTPError as e:
            raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise FetchError(f"cannot download {url}: {reason} "
                             f"(no network? copy the files into {out} by hand)") from None
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise FetchError(f"{url}: sha256 {got} does not match upstream's {want}")
        out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(dest, data, "an upstream data file")
        if not quiet:
            print(f"{dest} ({len(data):,} bytes)")
        written.append(dest)
    return written


def _kaggle_cli() -> list[str]:
    beside = Path(sys.executable).with_name("kaggle")
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("kaggle")
    if found:
        return [found]
    raise FetchError("the kaggle CLI is not installed (pip install kaggle)")


def fetch_kaggle(competition: str, out: Path, quiet: bool = False) -> list[Path]:
    if kaggle_credentials()[0] is None:
        raise FetchError(CREDENTIALS_HELP)
    cli = _kaggle_cli()
    out.mkdir(parents=True, exist_ok=True)
    cmd = cli + ["competitions", "download", "-c", competition, "-p", str(out)] + (["-q"] if quiet else [])
    proc = subprocess.run(cmd, capture_output=quiet, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] if quiet else []
        raise FetchError(f"`{' '.join(cmd)}` failed (exit {proc.returncode})"
                         f"{': ' + detail[0] if detail else ''}")
    extracted = []
    for z in sorted(out.glob("*.zip")):
        with zipfile.ZipFile(z) as zf:
            for member in zf.infolist():
                target = (out / member.filename).resolve()
                if out.resolve() not in target.parents and target != out.resolve():
                    raise FetchError(f"{z}: refusing to extract {member.filename!r} outside {out}")
                if member.is_dir():
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(target, zf.read(member), "a competition file")
                extracted.append(target)
        z.unlink()
    if not quiet:
        for p in extracted:
            print(p)
    return extracted


def main(argv: list[str] | None = None) -> int:
    return cli_main(_main, argv)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m trmkit.fetch", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    up = sub.add_parser("upstream", help="upstream TRM's kaggle/combined JSON (10 files)")
    up.add_argument("--out", default="data/raw")
    kg = sub.add_parser("kaggle", help="a Kaggle competition's data (kaggle CLI + credentials)")
    kg.add_argument("--competition", default=COMPETITION, help=f"competition slug (default {COMPETITION})")
    kg.add_argument("--out", required=True)
    for p in (up, kg):
        p.add_argument("--quiet", action="store_true")
    return ap


def _main(argv: list[str]) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.what == "upstream":
        fetch_upstream(Path(args.out), args.quiet)
    else:
        fetch_kaggle(args.competition, Path(args.out), args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
