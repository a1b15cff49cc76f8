"""Stage and publish the kit's Kaggle datasets and its Hugging Face weights.

    python -m trmkit.bundles push [--profile kaggle-2026] [--checkpoint DIR] [--owner NAME] [--dry-run]
    python -m trmkit.bundles hf-publish --repo owner/name [--checkpoint DIR] [--dry-run]

(The competition kernel itself, its push and its submission: trmkit/kernel.py.)

Three datasets, staged under build/kaggle/<bundle>/ with a dataset-metadata.json rendered from
kaggle/templates/ (owner from --owner, KAGGLE_USERNAME or kaggle.json; slugs <prefix>-<bundle>):
  wheels   the offline wheelhouse of trmkit/wheelhouse.py (built first if missing)
  repo     the committed tree (`git archive HEAD`) + COMMIT; a dirty tree is refused without --force
  weights  trm.checkpoint.export_slim of --checkpoint, README.md model card (trmkit/model_card.py),
           and the run's COMMANDS.txt / ENVIRONMENT.txt / TRM_COMMIT.txt / metrics.json
Everything staged is scanned for credentials first (key files, tokens, private keys); any hit
refuses the push. The real kaggle CLI does the pushing: `datasets status` decides create or
version (create exits 0 on a slug clash, so `create || version` never works); any printed
"... error: ..." line is a failure even at exit 0; a bundle whose content hash equals the one
in build/kaggle/pushed.json is skipped. Without credentials everything is staged, the plan is
printed and the exit code is 2; --dry-run does the same on purpose and exits 0.
Credentials are read by the CLI / huggingface_hub only: never printed, never copied.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

from trm.errors import UserError, cli_main
from trm.paths import build_root
from trm.util import sha256_file
from trmkit.kaggle_cli import (
    NO_CREDENTIALS,
    dataset_exists,
    kaggle_credentials,
    run_cli,
)
from trmkit.secrets import files_of, scan_secrets

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KAGGLE_DIR = REPO / "kaggle"  # the notebook, its kernel metadata and the dataset templates
TEMPLATES = KAGGLE_DIR / "templates"
STAGE = REPO / build_root() / "kaggle"  # trm.paths: $TRM_BUILD_DIR (default build/)
BUNDLES = ("wheels", "repo", "weights")
PROVENANCE = ("COMMANDS.txt", "ENVIRONMENT.txt", "TRM_COMMIT.txt", "metrics.json")
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{4,48})[a-z0-9]$")  # Kaggle: 6-50 chars
OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")
NO_OWNER = "YOUR_KAGGLE_USERNAME"
# The bundles' licence (--license / make LICENSE=): by default the kit's own, as pyproject.toml declares
# it. A prize entry needs its own code public-domain-like (CC0-1.0 or MIT-0; MIT is not): docs/kaggle.md.
KIT_LICENSE = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]
# dataset-metadata.json `licenses` names Kaggle's dataset docs list; any other licence is "other",
# named in the description
KAGGLE_DATASET_LICENSES = ("CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0",
                           "ODbL-1.0", "DbCL-1.0", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0",
                           "CDLA-Permissive-1.0",
                           "CDLA-Sharing-1.0", "CC-BY-ND-4.0", "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0",
                           "AGPL-3.0", "FDL-1.3")
LICENSE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")  # an SPDX-style identifier

class BundleError(UserError):
    """A bundle or the kernel cannot be staged, pushed or submitted (exit 1, as KaggleError)."""

    exit_code = 1


class NoCredentials(UserError):
    """No credentials to push or upload with: everything is staged, nothing sent (exit 2)."""



# ---------------------------------------------------------------- helpers



def show(p: Path) -> str:
    """A path as typed from the current directory when it lies below it, else absolute."""
    return os.path.relpath(p) if Path(p).resolve().is_relative_to(Path.cwd()) else str(p)




def content_hash(d: Path) -> str:
    """sha256 over (relative path, file sha256) of everything but the metadata file."""
    h = hashlib.sha256()
    for p in files_of(d):
        rel = p.relative_to(d).as_posix()
        if rel != "dataset-metadata.json":
            h.update(f"{rel}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


PLACEHOLDER = re.compile(r"\$?\{([A-Za-z_]\w*)\}")  # ${name} or {name}


def render(template: Path, **values) -> dict:
    """Substitute ${name} / {name} in every string of a JSON template; an unknown name is an error."""
    def fill(m: re.Match) -> str:
        if m.group(1) not in values:
            raise BundleError(f"{template.name}: no value for placeholder {m.group(0)} "
                              f"(known: {', '.join(sorted(values))})")
        return str(values[m.group(1)])

    def sub(x):
        if isinstance(x, str):
            return PLACEHOLDER.sub(fill, x)
        if isinstance(x, list):
            return [sub(v) for v in x]
        if isinstance(x, dict):
            return {k: sub(v) for k, v in x.items()}
        return x
    return sub(json.loads(template.read_text()))


def check_dataset_meta(meta: dict) -> None:
    owner, _, slug = meta["id"].partition("/")
    if not SLUG.match(slug):
        raise BundleError(f"dataset slug {slug!r}: 6-50 chars of a-z, 0-9 and '-' (not at the ends)")
    if owner != NO_OWNER and not OWNER.match(owner):
        raise BundleError(f"owner {owner!r} is not a Kaggle user name")
    if not 6 <= len(meta["title"]) <= 50:
        raise BundleError(f"title {meta['title']!r} must be 6-50 characters")
    if meta.get("subtitle") and not 20 <= len(meta["subtitle"]) <= 80:
        raise BundleError(f"subtitle {meta['subtitle']!r} must be 20-80 characters")
    if len(meta.get("licenses", [])) != 1:
        raise BundleError("exactly one licence is required")


def git(*args: str, cwd: Path = REPO) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise BundleError(f"git {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.rstrip()


def load_pushed(stage: Path) -> dict:
    p = stage / "pushed.json"
    return json.loads(p.read_text()) if p.is_file() else {"datasets": {}, "kernels": {}}


def save_pushed(stage: Path, pushed: dict) -> None:
    stage.mkdir(parents=True, exist_ok=True)
    tmp = stage / "pushed.json.tmp"
    tmp.write_text(json.dumps(pushed, indent=1, sort_keys=True) + "\n")
    tmp.replace(stage / "pushed.json")


# ---------------------------------------------------------------- staging

def _wheels_module():
    from trmkit import wheelhouse

    return wheelhouse


def stage_wheels(dest: Path, profile: dict, wheelhouse: Path | None, force: bool) -> dict:
    """Copy a wheelhouse in. Without --wheels-dir the default one is (re)built first, with the extras
    it was built with, so the bundle always matches the tree (an unchanged tree rebuilds to the
    same bytes, and then the push skips it)."""
    if wheelhouse is None:
        wheelhouse = _wheels_module().default_out(profile["name"])
        old = wheelhouse / "MANIFEST.json"
        extras = json.loads(old.read_text()).get("extras", []) if old.is_file() else []
        cmd = [sys.executable, "-m", "trmkit.wheelhouse", "--profile", profile["name"],
               "--out", str(wheelhouse), *[x for e in extras for x in ("--extra", e)]]
        if subprocess.run(cmd, cwd=REPO).returncode:
            raise BundleError("python -m trmkit.wheelhouse failed")
    manifest = json.loads((wheelhouse / "MANIFEST.json").read_text())
    if manifest["profile"] != profile["name"]:
        raise BundleError(f"{wheelhouse} holds a {manifest['profile']} wheelhouse, not {profile['name']}")
    if manifest.get("source", {}).get("dirty") and not force:
        raise BundleError("the kit wheel was built from uncommitted sources (trm/, dataset_builder/, "
                          "pyproject.toml); commit them, or pass --force")
    dest.mkdir(parents=True)
    for f in manifest["files"]:
        shutil.copy2(wheelhouse / f["file"], dest / f["file"])
        if sha256_file(dest / f["file"]) != f["sha256"]:
            raise BundleError(f"{f['file']} does not match {wheelhouse}/MANIFEST.json")
    for name in ("MANIFEST.json", "requirements.txt"):
        shutil.copy2(wheelhouse / name, dest / name)
    return {"profile": profile["name"], "python": profile["python"]}


def stage_repo(dest: Path, repo: Path, force: bool) -> dict:
    dirty = git("status", "--porcelain", "--untracked-files=no", cwd=repo)
    if dirty and not force:
        raise BundleError("the working tree has uncommitted changes; commit them, or pass --force "
                          "(the repo bundle is always HEAD):\n" + dirty)
    if dirty:
        print("repo: --force: uncommitted changes are NOT in the bundle (it is HEAD)")
    commit = git("rev-parse", "HEAD", cwd=repo)
    dest.mkdir(parents=True)
    proc = subprocess.Popen(["git", "archive", "--format=tar", "HEAD"], cwd=repo, stdout=subprocess.PIPE)
    with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
        tar.extractall(dest, filter="data")
    if proc.wait():
        raise BundleError("git archive HEAD failed")
    (dest / "COMMIT").write_text(commit + "\n")
    return {"commit": commit}


def stage_weights(dest: Path, ckpt: Path, metrics_path: Path | None, name: str, license: str) -> dict:
    """Slim export + model card + the run's provenance files (nearest run dir first)."""
    from trm.checkpoint import export_slim
    from trm.sources import resolve_checkpoint
    from trmkit.model_card import find_metrics, render_card

    # a kit checkpoint dir, an upstream step_N file (all_config.yaml beside it), or hf://...; an
    # unusable one is trm.checkpoint's one-line CheckpointError (exit 3; 2 when it does not exist)
    ckpt = resolve_checkpoint(str(ckpt)).resolve()
    export_slim(ckpt, dest)
    meta_path = dest / "meta.json"
    meta = json.loads(meta_path.read_text())
    if Path(str(meta.get("source", ""))).is_absolute():  # no absolute host paths in a public bundle
        meta["source"] = ckpt.name
        meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    src_meta = json.loads((ckpt / "meta.json").read_text()) if (ckpt / "meta.json").is_file() else {}
    copied = []
    for fname in PROVENANCE[:-1]:
        for d in [ckpt, *list(ckpt.parents)[:3]]:
            if (d / fname).is_file():
                shutil.copy2(d / fname, dest / fname)
                copied.append(fname)
                break
    metrics, source, note = find_metrics(ckpt, meta, metrics_path)
    if metrics is not None:
        if metrics.get("checkpoint"):  # trm.evaluate records the path it was given: keep the name only
            metrics = {**metrics, "checkpoint": Path(metrics["checkpoint"]).name}
        (dest / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        copied.append("metrics.json")
        print(f"weights: solve rates from {source}")
    else:
        print(f"weights: no solve rates in the card: {note}")
    (dest / "README.md").write_text(render_card(meta, metrics, name=name, provenance=copied,
                                                metrics_note=note,
                                                license=license,
                                                trained_git=src_meta.get("git")))
    return {"checkpoint": ckpt.name, "step": meta.get("step", "unknown")}


def stage_all(a, owner: str, profile: dict) -> list[dict]:
    """Stage the chosen bundles; returns [{bundle, dir, id, hash, files, bytes}] (scan included)."""
    if "weights" in a.bundles and a.checkpoint:  # an unusable checkpoint stops the run before any staging
        from trm.sources import usable_checkpoint
        usable_checkpoint(str(a.checkpoint))
    commit = git("rev-parse", "HEAD", cwd=a.repo_dir) if (a.repo_dir / ".git").exists() else "unknown"
    staged = []
    for bundle in a.bundles:
        dest = a.out / bundle
        if bundle == "weights" and not a.checkpoint:
            print("weights: skipped (no --checkpoint given; e.g. --checkpoint runs/x/checkpoints/step_N)")
            continue
        values = {"owner": owner, "slug": f"{a.slug_prefix}-{bundle}", "commit": commit, "license": a.license,
                  "kaggle_license": a.license if a.license in KAGGLE_DATASET_LICENSES else "other",
                  "profile": profile["name"], "python": profile["python"]}
        # restaged from scratch (no stale files) into a sibling, swapped in only when complete: a
        # failure (a full disk, a bad input) leaves the previous staged bundle as it was
        tmp = dest.with_name(f"{bundle}.staging-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            if bundle == "wheels":
                values.update(stage_wheels(tmp, profile, a.wheels_dir, a.force))
            elif bundle == "repo":
                values.update(stage_repo(tmp, a.repo_dir, a.force))
            else:
                name = getattr(a, "card_name", None) or f"{a.slug_prefix}-weights"
                values.update(stage_weights(tmp, a.checkpoint, a.metrics, name, a.license))
            meta = render(TEMPLATES / f"{bundle}-dataset-metadata.json", **values)
            check_dataset_meta(meta)
            (tmp / "dataset-metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
            _swap_in(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        files = [p for p in files_of(dest) if p.name != "dataset-metadata.json"]
        staged.append({"bundle": bundle, "dir": dest, "id": meta["id"], "hash": content_hash(dest),
                       "files": len(files), "bytes": sum(p.stat().st_size for p in files), "commit": commit})
    return staged


def _swap_in(new: Path, dest: Path) -> None:
    """Replace dest by the complete folder new (the old one moved aside first, removed last)."""
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def refuse_secrets(dirs: list[Path]) -> None:
    found = [f"{d.name}/{hit}" for d in dirs for hit in scan_secrets(d)]
    if found:
        raise BundleError("refusing to publish: credential-like content was found (remove it, and rotate any "
                          "key that ever reached git history):\n  " + "\n  ".join(found))


# ---------------------------------------------------------------- commands

def resolve_owner(a) -> tuple[str | None, str]:
    where, user = kaggle_credentials()
    owner = a.owner or user or NO_OWNER
    if not OWNER.match(owner):
        raise BundleError(f"owner {owner!r} is not a Kaggle user name")
    return where, owner


def stop_before_pushing(dry_run: bool, where: str | None, owner: str, done: str) -> int | None:
    """0 when nothing may be pushed because of a dry run; no credentials or no owner is a
    BundleError (one `error:` line, exit 2, after the plan is printed); None: push."""
    if dry_run:
        print(f"dry run: {done}, nothing pushed")
        return 0
    if where is None or owner == NO_OWNER:
        raise NoCredentials(NO_CREDENTIALS if where is None else
                          "a token does not name its user, so nothing was pushed: pass --owner NAME")
    return None


def cmd_push(a) -> int:
    profile = _wheels_module().load_profile(a.profile)
    where, owner = resolve_owner(a)
    staged = stage_all(a, owner, profile)
    refuse_secrets([s["dir"] for s in staged])
    pushed = load_pushed(a.out)
    print(f"\npush plan (owner {owner}; credentials: {where or 'none found'}):")
    for s in staged:
        d = show(s["dir"])
        print(f"  {s['bundle']:8} {s['id']}  {s['files']} files, {s['bytes'] / 1e6:.2f} MB, "
              f"content {s['hash'][:12]}")
        if pushed["datasets"].get(s["id"], {}).get("hash") == s["hash"]:
            print("           unchanged since the last push: skip")
            continue
        s["notes"] = f"{s['bundle']} bundle, kit commit {s['commit'][:12]}, content {s['hash'][:12]}"
        print(f"           kaggle datasets status {s['id']}\n"
              f"           then if it is new:  kaggle datasets create -p {d} --dir-mode zip"
              + (" --public" if a.public else "") +
              f"\n           else:               kaggle datasets version -p {d} --dir-mode zip "
              f"-m \"{s['notes']}\"")
    stop = stop_before_pushing(a.dry_run, where, owner, "staged and checked")
    if stop is not None:
        return stop
    for s in staged:
        if "notes" not in s:
            continue
        if dataset_exists(s["id"]):
            run_cli(["datasets", "version", "-p", str(s["dir"]), "--dir-mode", "zip", "-m", s["notes"]])
        else:
            run_cli(["datasets", "create", "-p", str(s["dir"]), "--dir-mode", "zip"]
                    + (["--public"] if a.public else []))
        pushed["datasets"][s["id"]] = {k: s[k] for k in ("bundle", "hash", "files", "bytes", "commit")}
        save_pushed(a.out, pushed)  # after each bundle: a later failure keeps what already went up
        print(f"pushed {s['id']}")
    return 0


def cmd_hf_publish(a) -> int:
    a.bundles, a.card_name = ["weights"], a.repo.split("/")[-1]
    dest = a.out / "weights"
    if a.checkpoint:
        stage_all(a, a.owner or NO_OWNER, {"name": "-", "python": "-"})
    elif not (dest / "README.md").is_file():
        raise BundleError("nothing to publish: pass --checkpoint DIR (or stage it with `push --checkpoint`)")
    refuse_secrets([dest])
    from huggingface_hub import HfApi, get_token

    endpoint = os.environ.get("HF_ENDPOINT")  # read here too, whatever was imported first
    files = [p.relative_to(dest).as_posix() for p in files_of(dest) if p.name != "dataset-metadata.json"]
    print(f"hf-publish plan: {len(files)} files from {show(dest)} -> model repo {a.repo}"
          f" ({'public' if a.public else 'private'} if new) on {endpoint or 'huggingface.co'}: "
          f"{', '.join(files)}")
    if a.dry_run:
        print("dry run: nothing uploaded")
        return 0
    token = get_token()
    if not token:
        raise NoCredentials("no Hugging Face token, so nothing was uploaded: set HF_TOKEN or run "
                          "`hf auth login`, then rerun")
    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(a.repo, repo_type="model", private=not a.public, exist_ok=True)
    info = api.upload_folder(folder_path=dest, repo_id=a.repo, repo_type="model",
                             ignore_patterns=["dataset-metadata.json"],
                             commit_message=f"TRM weights ({content_hash(dest)[:12]})")
    print(f"uploaded: {info.commit_url}")
    return 0


def common_options() -> argparse.ArgumentParser:
    """The options every publishing command takes (here and in trmkit/kernel.py)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--owner", help="Kaggle user (default: KAGGLE_USERNAME or kaggle.json)")
    common.add_argument("--slug-prefix", default="trm-kit",
                        help="the datasets are <prefix>-wheels/-repo/-weights")
    common.add_argument("--out", type=Path, default=STAGE, help="staging dir (default build/kaggle)")
    common.add_argument("--dry-run", action="store_true", help="stage, check and print the plan only")
    return common


def main(argv: list[str] | None = None) -> int:
    return cli_main(_main, argv)  # one error convention for every entry point (docs/reliability.md)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = common_options()
    weights = argparse.ArgumentParser(add_help=False)
    weights.add_argument("--checkpoint", type=Path, help="kit checkpoint dir for the weights bundle")
    weights.add_argument("--metrics", type=Path, help="metrics.json of its evaluation (default: searched)")
    weights.add_argument("--repo-dir", type=Path, default=REPO, help=argparse.SUPPRESS)
    weights.add_argument("--force", action="store_true", help="stage the repo bundle from a dirty tree")
    weights.add_argument("--license", default=KIT_LICENSE, help=f"the bundles' licence, an SPDX id (default "
                         f"{KIT_LICENSE}, the kit's; a prize entry's own code: CC0-1.0 or MIT-0)")
    p = sub.add_parser("push", parents=[common, weights], help="stage and push the Kaggle datasets")
    p.add_argument("--profile", help="wheels/profiles.json entry (default kaggle-2026)")
    p.add_argument("--wheels-dir", type=Path,
                   help="a built wheelhouse (default: build/wheels/<profile>, rebuilt)")
    p.add_argument("--bundles", default=",".join(BUNDLES), help="comma list of wheels,repo,weights")
    p.add_argument("--public", action="store_true", help="create new datasets public (default private)")
    p = sub.add_parser("hf-publish", parents=[common, weights],
                       help="upload the weights bundle to the HF Hub")
    p.add_argument("--repo", required=True, help="owner/name of the model repo")
    p.add_argument("--public", action="store_true", help="make a new repo public (default private)")
    return ap


def _main(argv: list[str]) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    a.out = a.out.resolve()
    if not LICENSE_ID.match(a.license):
        ap.error(f"--license {a.license!r}: an SPDX identifier such as MIT, MIT-0 or CC0-1.0")
    if a.cmd == "push":
        a.bundles = [b.strip() for b in a.bundles.split(",") if b.strip()]
        if set(a.bundles) - set(BUNDLES):
            ap.error(f"--bundles: choose from {', '.join(BUNDLES)}")
    return {"push": cmd_push, "hf-publish": cmd_hf_publish}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
