"""Build the offline wheelhouse for a Kaggle image profile (profiles in wheels/profiles.json).

    python -m trmkit.wheelhouse --profile kaggle-2026 [--out build/wheels/kaggle-2026] [--extra 'pkg==1.2']

Ships the kit's own wheel plus only the runtime dependencies the image lacks: each missing
requirement is fetched as a binary for the *target* interpreter (pip download --python-version/
--abi/--platform, every manylinux tag listed), else built from its sdist, which must come out
py3-none-any. torch, triton, the CUDA stack and non-manylinux platform wheels are refused.
Writes MANIFEST.json and a hash-pinned requirements.txt; the notebook then runs
    pip install --no-index --find-links DIR -r DIR/requirements.txt
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from trm.errors import UserError, cli_main
from trm.paths import build_root
from trm.util import sha256_file

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "wheels" / "profiles.json"
# what goes into the kit wheel
PACKAGED = ("trm", "dataset_builder", "pyproject.toml", "README.md", "LICENSE")


def load_profile(name: str | None) -> dict:
    doc = json.loads(PROFILES.read_text())
    name = name or doc["default"]
    if name not in doc["profiles"]:
        raise UserError(f"unknown profile {name!r} (wheels/profiles.json); "
                        f"known: {', '.join(doc['profiles'])}")
    return {"name": name, **doc["profiles"][name]}




def forbidden(name: str, profile: dict) -> bool:
    return any(fnmatch.fnmatch(canonicalize_name(name), pat) for pat in profile["never_ship"])


def target_env(profile: dict) -> dict:
    """Marker environment of the image's interpreter (not the build host's)."""
    py = profile["python"]
    return {"python_version": ".".join(py.split(".")[:2]), "python_full_version": py,
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
            "os_name": "posix"}


def check_tags(wheel: Path, profile: dict) -> None:
    """Refuse a wheel the image cannot load: other interpreters, linux_x86_64, CUDA local labels."""
    name, version, _, tags = parse_wheel_filename(wheel.name)
    ok_py = {"py3", "py2", profile["abi"]}  # cp311 is both the interpreter and the ABI tag

    def stable_abi(t) -> bool:  # cp3X-abi3: CPython 3.X or later (pyzmq, tornado ship one such wheel)
        target = int(profile["abi"][2:])
        return t.abi == "abi3" and t.interpreter.startswith("cp3") and int(t.interpreter[2:]) <= target

    for t in tags:
        python_ok = t.interpreter in ok_py or stable_abi(t)
        if not python_ok or t.abi not in {"none", "abi3", profile["abi"]} \
                or (t.platform != "any" and t.platform not in profile["platforms"]):
            sys.exit(f"refusing {wheel.name}: tag {t} does not fit {profile['name']} "
                     "(a non-manylinux build needs auditwheel repair; CUDA extensions are never shipped)")
    if version.local and version.local.startswith("cu"):
        sys.exit(f"refusing {wheel.name}: CUDA build ({version})")


def requires_dist(wheel: Path, extras: set[str], profile: dict) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(z.read(meta).decode())
    env, out = target_env(profile), []
    for line in msg.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in extras | {""}):
            out.append(req)
    return out


def pip(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def source_state(repo: Path) -> dict:
    """The last commit that changed the packaged sources, its time, and whether they differ from
    it (edits or new untracked files). Commits elsewhere in the repo leave all three unchanged."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=repo, capture_output=True, text=True).stdout.strip()
    last = git("log", "-1", "--format=%H %ct", "--", *PACKAGED).split()
    return {"commit": last[0] if last else None, "time": int(last[1]) if last else 315532800,
            "dirty": bool(git("status", "--porcelain", "--", *PACKAGED))}


def _runtime_only(pyproject: Path) -> None:
    """The wheel that goes to Kaggle carries the runtime only (trm, dataset_builder): the copy's
    package list drops the tooling package trmkit, which the development install keeps."""
    text = pyproject.read_text()
    runtime = 'include = ["trm", "trm.*", "dataset_builder", "dataset_builder.*"]'
    new, n = re.subn(r'(?m)^include = \[.*\]$', runtime, text)
    if n != 1:
        raise UserError(f"{pyproject}: expected one `include = [...]` line "
                        "under [tool.setuptools.packages.find]")
    pyproject.write_text(new)


def build_kit_wheel(repo: Path, dest: Path) -> Path:
    """`pip wheel --no-deps --no-build-isolation` of a clean copy of the tracked + untracked-unignored
    files: no stale setuptools build/ dir, no egg-info written into the shared tree."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=repo, capture_output=True, text=True, check=True).stdout.split("\0")
    # reproducible zip timestamps, so unchanged sources give a byte-identical wheel (push skips it)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(source_state(repo)["time"])}
    with tempfile.TemporaryDirectory(prefix="trm-kit-src-") as src:
        for rel in filter(None, files):
            if (repo / rel).is_file():
                (Path(src) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(repo / rel, Path(src) / rel)
        _runtime_only(Path(src) / "pyproject.toml")
        r = pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), src, env=env)
    if r.returncode:
        sys.exit(f"building the kit wheel failed:\n{r.stdout}{r.stderr}")
    return max(dest.glob("*.whl"), key=lambda p: p.stat().st_mtime)


def fetch(req: Requirement, profile: dict, dest: Path, index_args: list[str], isolation: bool) -> Path:
    """A binary wheel for the target, else a pure wheel built from the sdist."""
    spec = f"{req.name}{req.specifier}"
    before = set(dest.glob("*.whl"))
    plat = [a for p in profile["platforms"] for a in ("--platform", p)]
    r = pip("download", "--no-deps", "--only-binary=:all:", "--python-version", profile["python"],
            "--implementation", profile["implementation"], "--abi", profile["abi"], "--abi", "abi3",
            "--abi", "none", *plat, "-d", str(dest), *index_args, spec)
    if r.returncode:
        print(f"  no {profile['name']} binary for {spec}; building from the sdist")
        r = pip("wheel", "--no-deps", "--no-binary", canonicalize_name(req.name), "-w", str(dest),
                *index_args, *([] if isolation else ["--no-build-isolation"]), spec)
        if r.returncode:
            sys.exit(f"cannot get {spec} for {profile['name']}:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    new = set(dest.glob("*.whl")) - before
    name = canonicalize_name(req.name)
    return next(p for p in new or dest.glob("*.whl") if canonicalize_name(p.name.split("-")[0]) == name)


def preinstalled(req: Requirement, profile: dict) -> bool:
    """True if the image provides it (its version must meet the pin); exits on a refusal."""
    name, pre = canonicalize_name(req.name), profile["preinstalled"]
    if name in pre:  # never shipped or replaced, but it must satisfy the requirement
        if pre[name] and not req.specifier.contains(Version(pre[name]), prereleases=True):
            sys.exit(f"{req} is not met by the image's {name} {pre[name]}; refusing to replace it")
        return True
    if forbidden(name, profile):
        sys.exit(f"refusing to ship {req}: torch/CUDA packages come from the image only")
    return False


def build(profile: dict, out: Path, extras: list[str], index_args: list[str], isolation: bool) -> dict:
    for e in extras:  # refuse early, before any building
        preinstalled(Requirement(e), profile)
    out.mkdir(parents=True, exist_ok=True)
    for old in [*out.glob("*.whl"), out / "MANIFEST.json", out / "requirements.txt"]:
        old.unlink(missing_ok=True)
    kit = build_kit_wheel(REPO, out)
    print(f"kit wheel: {kit.name}")
    shipped = {canonicalize_name(parse_wheel_filename(kit.name)[0]): kit}
    queue = [(r, set(r.extras)) for r in requires_dist(kit, set(), profile)]
    queue += [(Requirement(e), set(Requirement(e).extras)) for e in extras]
    notes = []
    while queue:
        req, req_extras = queue.pop(0)
        name = canonicalize_name(req.name)
        if preinstalled(req, profile):
            version = profile["preinstalled"][name] or "(version not recorded)"
            notes.append(f"{name} {version}: preinstalled, satisfies {req}")
            continue
        if name in shipped:
            v = parse_wheel_filename(shipped[name].name)[1]
            if not req.specifier.contains(v, prereleases=True):
                sys.exit(f"conflict: {req} but {shipped[name].name} was already chosen")
            continue
        wheel = fetch(req, profile, out, index_args, isolation)
        check_tags(wheel, profile)
        shipped[name] = wheel
        print(f"missing on the image, shipping: {wheel.name}")
        queue += [(r, set(r.extras)) for r in requires_dist(wheel, req_extras, profile)]
    for stray in set(out.glob("*.whl")) - set(shipped.values()):
        stray.unlink()
    files = []
    for name, w in sorted(shipped.items()):
        version = parse_wheel_filename(w.name)[1]
        files.append({"file": w.name, "name": name, "version": str(version),
                      "tags": "-".join(w.name[:-4].split("-")[-3:]),  # python-abi-platform, as in the name
                      "sha256": sha256_file(w), "size": w.stat().st_size})
    manifest = {"profile": profile["name"], "python": profile["python"], "abi": profile["abi"],
                "source": source_state(REPO), "extras": extras, "files": files,
                "preinstalled_not_shipped": notes}
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    lines = [f"# trm-kaggle-kit wheelhouse for {profile['name']} (CPython {profile['python']}), "
             "written by trmkit/wheelhouse.py",
             "# pip install --no-index --find-links <this dir> -r <this dir>/requirements.txt"]
    lines += [f"{f['name']}=={f['version']} --hash=sha256:{f['sha256']}" for f in files]
    (out / "requirements.txt").write_text("\n".join(lines) + "\n")
    return manifest


def default_out(profile: str) -> Path:
    """build/wheels/<profile> (trm.paths: $TRM_BUILD_DIR, default build/): the wheelhouse that
    `make kaggle-wheels`, the wheel check and `make kaggle-datasets` share."""
    return REPO / build_root() / "wheels" / profile


def main(argv: list[str] | None = None) -> int:
    return cli_main(_main, argv)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", help="wheels/profiles.json entry (default: its 'default')")
    ap.add_argument("--out", type=Path, help="wheelhouse dir (default build/wheels/<profile>)")
    ap.add_argument("--extra", action="append", default=[], help="another requirement to ship if missing")
    ap.add_argument("--find-links", action="append", default=[], help="passed to pip (local wheels/sdists)")
    ap.add_argument("--no-index", action="store_true", help="passed to pip: use only --find-links")
    ap.add_argument("--no-build-isolation", action="store_true", help="for sdist builds (offline)")
    return ap


def _main(argv: list[str]) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    profile = load_profile(a.profile)
    out = (a.out or default_out(profile["name"])).resolve()
    index_args = ([x for d in a.find_links for x in ("--find-links", str(d))]
                  + (["--no-index"] if a.no_index else []))
    m = build(profile, out, a.extra, index_args, not a.no_build_isolation)
    total = sum(f["size"] for f in m["files"])
    print(f"{profile['name']}: {len(m['files'])} wheel(s), {total / 1e6:.2f} MB in {out}")
    for n in m["preinstalled_not_shipped"]:
        print(f"  not shipped: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
