"""Prove a wheelhouse installs with no network and runs: python -m trmkit.wheelcheck --profile kaggle-2025

Needs a host Python of the profile's major.minor (else it prints why and exits 0). Steps:
  1. verify every wheel against MANIFEST.json (sha256, size) and refuse torch/CUDA wheels;
  2. make a fresh venv under /tmp holding stand-ins for what the image preinstalls:
       --stand-ins pip   (default) pip-installs torch==2.13.0 (CPU, via this machine's pip config),
                         numpy at the profile's version and tqdm; this step may use the network;
       --stand-ins link  reuses this interpreter's own torch/numpy/tqdm (and torch's pure-Python
                         deps) through a .pth file; fully offline and fast (the test uses it);
  3. install the wheelhouse exactly as the notebook does, with the network gone (`unshare -n`
     when root, plus PIP_CONFIG_FILE=/dev/null and no PIP_* variables):
       pip install --no-index --find-links DIR -r DIR/requirements.txt
  4. with the network still gone, import trm from the venv (not this tree) and run a tiny TRM
     forward pass; report the timings.
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
from trmkit import wheelhouse as wb

SMOKE = """
import sys, torch, trm
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
print("trm", trm.__file__, "torch", torch.__version__, "logits", tuple(out["logits"].shape))
"""


def offline_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1"}


def no_network_prefix() -> list[str]:
    """`unshare -n` (root only): the command sees a network namespace with nothing in it."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
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


def main(argv: list[str] | None = None) -> int:
    return cli_main(_main, argv)


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile")
    ap.add_argument("--wheelhouse", type=Path, help="default build/wheels/<profile>")
    ap.add_argument("--stand-ins", choices=["pip", "link"], default="pip")
    ap.add_argument("--keep", action="store_true", help="keep the /tmp venv")
    a = ap.parse_args(argv)
    profile = wb.load_profile(a.profile)
    want = tuple(int(x) for x in profile["python"].split(".")[:2])
    if sys.version_info[:2] != want:
        print(f"SKIP: {profile['name']} targets Python {want[0]}.{want[1]} but this is "
              f"{sys.version.split()[0]}; run with a {want[0]}.{want[1]} interpreter to check it")
        return 0
    wh = (a.wheelhouse or wb.REPO / "build" / "wheels" / profile["name"]).resolve()
    if not (wh / "MANIFEST.json").is_file():
        raise UserError(f"no wheelhouse at {wh}: run `python -m trmkit.wheelhouse --profile {profile['name']}` first")
    manifest = verify_wheelhouse(wh, profile)
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="trm-wheels-check-"))
    venv, py = root / "venv", root / "venv" / "bin" / "python"
    try:
        # no pip/setuptools of its own (3.11's ensurepip setuptools is older than torch wants);
        # this interpreter's pip drives it through --python, as the image's pip drives the image
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        pip = [sys.executable, "-m", "pip", "--python", str(py), "--disable-pip-version-check"]
        site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        if a.stand_ins == "link":
            print("image stand-ins (linked):", ", ".join(link_stand_ins(site, ["torch", "numpy", "tqdm"])))
        else:
            pre = profile["preinstalled"]
            specs = ["torch==2.13.0", f"numpy=={pre['numpy']}" if pre.get("numpy") else "numpy", "tqdm"]
            print("image stand-ins (pip):", " ".join(specs))
            subprocess.run([*pip, "install", "-q", *specs], check=True)
        t1 = time.perf_counter()
        cut = no_network_prefix()
        before = set(os.listdir(site))
        cmd = [*cut, *pip, "install", "--no-index", "--find-links", str(wh),
               "-r", str(wh / "requirements.txt")]
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
    print(f"OK {profile['name']}: {len(shipped)} wheel(s) installed offline from {wh}; "
          f"venv+stand-ins {t1 - t0:.1f}s, offline install {t2 - t1:.1f}s, import+forward {t3 - t2:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
