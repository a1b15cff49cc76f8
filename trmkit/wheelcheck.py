"""Prove a wheelhouse installs with no network and runs, on the image's own Python version.

    python -m trmkit.wheelcheck --profile kaggle-2026 [--wheelhouse DIR] [--stand-ins auto|env|link]
    python -m trmkit.wheelcheck --profile kaggle-2026 --setup      # once, with the network: the image env

The check runs on an interpreter of the profile's major.minor (this one, python3.X on PATH, or a
pyenv version; else it stops and says so). Steps:
  1. verify every wheel against MANIFEST.json (sha256, size) and refuse torch/CUDA wheels;
  2. make a fresh venv with that interpreter, seeing stand-ins for what the image preinstalls:
       env   build/image-envs/<profile>/, made by --setup: a venv of that Python with the image's own
             torch (the CUDA build, which runs on a CPU), numpy and tqdm at the profile's versions
             (`make kaggle-image-envs`; several GB, downloaded once);
       link  this interpreter's torch/numpy/tqdm/pip, when the profile's Python is this one;
       auto  (default) env if it was made, else link where it applies;
  3. install the wheelhouse exactly as the notebook does, with the network gone (`unshare -n`
     when root, plus PIP_CONFIG_FILE=/dev/null and no PIP_* variables), with the image's pip:
       python -m pip install --no-index --find-links DIR -r DIR/requirements.txt
  4. with the network still gone, import trm from the venv (not this tree) and run a tiny TRM
     forward pass under the stand-in torch; report the versions and timings.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trm.errors import UserError, cli_main
from trm.paths import build_root
from trmkit import wheelhouse as wb


def image_envs() -> Path:
    """--setup's stand-in venvs, one per profile, under $TRM_BUILD_DIR (read at each call, not at
    import: a process that imported this module under another build root still finds them)."""
    return wb.REPO / build_root() / "image-envs"


SMOKE = """
import sys, numpy, torch, trm
from trm.model import ModelConfig, TRM
assert trm.__file__.startswith(sys.prefix), f"trm imported from {trm.__file__}, not the venv"
cfg = ModelConfig(hidden_size=32, num_heads=2, n_layers=1, n_outer_cycles=1, n_latent_steps=1,
                  halt_max_steps=2, puzzle_emb_ndim=32, num_puzzle_identifiers=4, forward_dtype="float32")
torch.manual_seed(0)
model = TRM(cfg).eval()
B = 2
batch = {"inputs": torch.randint(0, 12, (B, 900), dtype=torch.int32),
         "labels": torch.randint(0, 12, (B, 900), dtype=torch.int32),
         "puzzle_identifiers": torch.arange(B, dtype=torch.int32)}
with torch.no_grad():
    carry = model.initial_carry(batch)
    carry, out = model(carry, batch)
assert tuple(out["logits"].shape) == (B, 900, 12), out["logits"].shape
assert torch.isfinite(out["logits"]).all()
print("python", sys.version.split()[0], "torch", torch.__version__, "numpy", numpy.__version__)
print("trm", trm.__file__, "logits", tuple(out["logits"].shape))
"""


def offline_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_CACHE_DIR": "1"}


def no_network_prefix() -> list[str]:
    """`unshare -n` (root only): the command sees a network namespace with nothing in it."""
    if (shutil.which("unshare")
            and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0):
        return ["unshare", "-n"]
    print("note: `unshare -n` unavailable (not root?); relying on --no-index and PIP_CONFIG_FILE=/dev/null")
    return []


def verify_wheelhouse(wh: Path, profile: dict) -> dict:
    manifest = json.loads((wh / "MANIFEST.json").read_text())
    if manifest["profile"] != profile["name"]:
        sys.exit(f"{wh} was built for {manifest['profile']}, not {profile['name']}")
    listed = {f["file"] for f in manifest["files"]}
    extra = {p.name for p in wh.glob("*.whl")} - listed
    if extra:
        sys.exit(f"wheels not in MANIFEST.json: {sorted(extra)}")
    for f in manifest["files"]:
        p = wh / f["file"]
        if wb.forbidden(f["name"], profile):
            sys.exit(f"{f['file']}: torch/CUDA packages must never be shipped")
        if not p.is_file() or p.stat().st_size != f["size"] or wb.sha256_file(p) != f["sha256"]:
            sys.exit(f"{f['file']}: missing or differs from MANIFEST.json")
    return manifest


def link_stand_ins(site: Path, names: list[str]) -> list[str]:
    """Symlink the given distributions (and what they require) from this interpreter into one dir."""
    shim, todo, done = site.parent / "image-stand-ins", list(names), []
    shim.mkdir()
    while todo:
        dist = md.distribution(todo.pop())
        name = dist.metadata["Name"]
        if name.lower() in (d.lower() for d in done):
            continue
        done.append(f"{name}=={dist.version}")
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (shim / top).exists():
                (shim / top).symlink_to(src)
        for req in dist.requires or []:
            r = wb.Requirement(req)
            if r.marker is None or r.marker.evaluate():
                todo.append(r.name)
    (site / "image-stand-ins.pth").write_text(f"{shim}\n")
    return done


def minor(profile: dict) -> str:
    return ".".join(profile["python"].split(".")[:2])


def find_interpreter(profile: dict) -> Path | None:
    """A CPython of the profile's major.minor: this one, python3.X on PATH, else the newest pyenv
    version of it ($PYENV_ROOT, default ~/.pyenv)."""
    want = minor(profile)
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == want:
        return Path(sys.executable)
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    pyenv = sorted((p for p in root.glob(f"{want}.*/bin/python{want}")
                    if p.parent.parent.name.split(".")[2].isdigit()),
                   key=lambda p: -int(p.parent.parent.name.split(".")[2]))
    on_path = shutil.which(f"python{want}")
    for cand in [*([Path(on_path)] if on_path else []), *pyenv]:  # a pyenv shim on PATH may not run: try it
        r = subprocess.run([str(cand), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip() == want:
            return cand
    return None


def image_specs(profile: dict) -> list[str]:
    """The pip requirements standing in for the image's packages: its torch/numpy versions (local
    labels such as +cu128 dropped: PyPI's build of that version), tqdm."""
    pre = profile["preinstalled"]
    return [f"{n}=={pre[n].split('+')[0]}" if pre.get(n) else n for n in ("torch", "numpy", "tqdm")]


def setup_image_env(profile: dict, dest: Path) -> Path:
    """build/image-envs/<profile>/: a venv of the profile's Python with the image's torch, numpy and
    tqdm, through this machine's pip configuration (the network). Reused when already complete."""
    done = dest / "image-env.json"
    specs = image_specs(profile)
    if done.is_file() and json.loads(done.read_text()).get("specs") == specs:
        print(f"image env {dest}: already made ({', '.join(specs)})")
        return dest
    interp = find_interpreter(profile)
    if interp is None:
        raise UserError(_no_interpreter(profile))
    shutil.rmtree(dest, ignore_errors=True)
    subprocess.run([str(interp), "-m", "venv", str(dest)], check=True)
    t0 = time.perf_counter()
    r = subprocess.run([str(dest / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", *specs])
    if r.returncode:
        raise UserError(f"pip could not install {' '.join(specs)} for Python {minor(profile)} into {dest}")
    done.write_text(json.dumps({"profile": profile["name"], "specs": specs}) + "\n")
    print(f"image env {dest}: {', '.join(specs)} on Python {minor(profile)} "
          f"in {time.perf_counter() - t0:.0f} s")
    return dest


def _no_interpreter(profile: dict) -> str:
    v = minor(profile)
    return (f"{profile['name']} targets Python {v}, and no Python {v} was found (this is "
            f"{sys.version.split()[0]}; none as python{v} on PATH or under pyenv): install one "
            f"(e.g. `pyenv install {v}`), then rerun")


def site_dirs(py: Path) -> list[Path]:
    out = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib')); "
                          "print(sysconfig.get_path('platlib'))"], capture_output=True, text=True, check=True)
    return list(dict.fromkeys(Path(line) for line in out.stdout.split()))


def main(argv: list[str] | None = None) -> int:
    return cli_main(_main, argv)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile")
    ap.add_argument("--wheelhouse", type=Path, help="default build/wheels/<profile>")
    ap.add_argument("--stand-ins", choices=["auto", "env", "link"], default="auto")
    ap.add_argument("--image-env", type=Path, help="default build/image-envs/<profile>")
    ap.add_argument("--setup", action="store_true", help="make the image env (network), then stop")
    ap.add_argument("--keep", action="store_true", help="keep the /tmp venv")
    return ap


def _main(argv: list[str]) -> int:
    ap = parser()
    a = ap.parse_args(argv)
    profile = wb.load_profile(a.profile)
    image_env = (a.image_env or image_envs() / profile["name"]).resolve()
    if a.setup:
        setup_image_env(profile, image_env)
        return 0
    interp = find_interpreter(profile)
    if interp is None:
        raise UserError(_no_interpreter(profile))
    here = interp == Path(sys.executable)
    mode = a.stand_ins
    if mode == "auto":
        mode = "env" if (image_env / "image-env.json").is_file() else "link" if here else None
    if mode is None or (mode == "env" and not (image_env / "image-env.json").is_file()):
        raise UserError(f"no stand-ins for the {profile['name']} image: make them once with "
                        "`make kaggle-image-envs` "
                        f"(or python -m trmkit.wheelcheck --profile {profile['name']} --setup)")
    if mode == "link" and not here:
        raise UserError(f"--stand-ins link needs this interpreter to be Python {minor(profile)}; use env")
    wh = (a.wheelhouse or wb.default_out(profile["name"])).resolve()
    if not (wh / "MANIFEST.json").is_file():
        raise UserError(f"no wheelhouse at {wh}: "
                        f"run `python -m trmkit.wheelhouse --profile {profile['name']}` first")
    manifest = verify_wheelhouse(wh, profile)
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="trm-wheels-check-"))
    venv, py = root / "venv", root / "venv" / "bin" / "python"
    try:
        # no pip/setuptools of its own (3.11's ensurepip setuptools is older than torch wants): the
        # stand-ins bring the image's pip, which installs into this venv as the image's pip would
        subprocess.run([str(interp), "-m", "venv", "--without-pip", str(venv)], check=True)
        site = site_dirs(py)[0]
        if mode == "link":
            print("image stand-ins (linked):",
                  ", ".join(link_stand_ins(site, ["torch", "numpy", "tqdm", "pip"])))
        else:
            (site / "image-env.pth").write_text(
                "".join(f"{d}\n" for d in site_dirs(image_env / "bin" / "python")))
            print(f"image stand-ins: {image_env} "
                  f"({', '.join(json.loads((image_env / 'image-env.json').read_text())['specs'])})")
        t1 = time.perf_counter()
        cut = no_network_prefix()
        before = set(os.listdir(site))
        cmd = [*cut, str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
               "--find-links", str(wh), "-r", str(wh / "requirements.txt")]
        print("offline install:", " ".join(cmd))
        r = subprocess.run(cmd, env=offline_env(), cwd=root, capture_output=True, text=True)
        print(r.stdout[-3000:], r.stderr[-3000:], sep="")
        if r.returncode:
            sys.exit("FAIL: the wheelhouse did not install offline")
        t2 = time.perf_counter()
        new = {p for p in set(os.listdir(site)) - before if p.endswith(".dist-info")}
        installed = {wb.canonicalize_name(p.removesuffix(".dist-info").rsplit("-", 1)[0]) for p in new}
        shipped = {f["name"] for f in manifest["files"]}
        if installed != shipped:
            sys.exit(f"FAIL: installed {sorted(installed)} but the wheelhouse ships {sorted(shipped)}")
        r = subprocess.run([*cut, str(py), "-I", "-c", SMOKE], env=offline_env(), cwd=root,
                           capture_output=True, text=True)
        print(r.stdout, r.stderr[-3000:], sep="")
        if r.returncode:
            sys.exit("FAIL: import / forward pass from the installed wheelhouse")
        t3 = time.perf_counter()
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"OK {profile['name']} on Python {minor(profile)} ({interp}): "
          f"{len(shipped)} wheel(s) installed offline "
          f"from {wh}; venv+stand-ins {t1 - t0:.1f}s, offline install {t2 - t1:.1f}s, "
          f"import+forward {t3 - t2:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
