"""Offline wheelhouse: profiles, tag/name refusals, build + offline install check.

    .venv/bin/python -m pytest -q tests/test_wheels.py

The build + check tests run for every profile, each check on an interpreter of the profile's own
Python (kaggle-2025: 3.11, kaggle-2026 and kaggle-2026-next: 3.12, colab-2026-py313: 3.13). They
never touch the network: builds run under `unshare -n` when possible, with the machine's pip config
disabled; the stand-ins for the image's torch/numpy/tqdm are this venv's (3.11) or the image envs
that `make kaggle-image-envs` made beforehand (3.12 x2, 3.13; .ci/run makes them).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


from trmkit import wheelhouse as wb  # noqa: E402

DOC = json.loads((REPO / "wheels" / "profiles.json").read_text())
HERE_PROFILE = next((n for n, p in DOC["profiles"].items()
                     if p["python"].split(".")[:2] == [str(x) for x in sys.version_info[:2]]), None)
needs_profile = pytest.mark.skipif(HERE_PROFILE is None,
                                   reason=f"no profile targets Python "
                                          f"{sys.version_info[0]}.{sys.version_info[1]}")
# the notebook images, Kaggle's and Colab's (gpu-h200 is a bench host)
PROFILES = [n for n in DOC["profiles"] if n.startswith(("kaggle-", "colab-"))]


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def offline() -> list[str]:
    """`unshare -n` (root): the child gets an empty network namespace."""
    ok = (shutil.which("unshare")
          and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0)
    return ["unshare", "-n"] if ok else []


def run(module: str, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([*offline(), sys.executable, "-m", module, *args], cwd=REPO,
                       env=clean_env(), capture_output=True, text=True, timeout=300)
    print(r.stdout[-4000:], r.stderr[-4000:])
    return r


# ---------------------------------------------------------------- fake distributions

def make_wheel(d: Path, name: str, version: str, requires=(), tag: str = "py3-none-any") -> Path:
    dist = f"{name.replace('-', '_')}-{version}"
    path = d / f"{dist}-{tag}.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    files = {f"{name.replace('-', '_')}/__init__.py": f"VERSION = {version!r}\n",
             f"{dist}.dist-info/METADATA": meta,
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        f"Tag: {tag}\n"}
    files[f"{dist}.dist-info/RECORD"] = "".join(f"{f},,\n" for f in files) + f"{dist}.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for f, text in files.items():
            z.writestr(f, text)
    return path


def make_sdist(d: Path, name: str, version: str) -> Path:
    root = f"{name}-{version}"
    files = {"pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'
                               'build-backend = "setuptools.build_meta"\n'
                               f'[project]\nname = "{name}"\nversion = "{version}"\n'
                               f'[tool.setuptools]\npy-modules = ["{name.replace("-", "_")}"]\n',
             "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{name.replace('-', '_')}.py": "X = 1\n"}
    path = d / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as t:
        for f, text in files.items():
            info = tarfile.TarInfo(f"{root}/{f}")
            info.size = len(text.encode())
            t.addfile(info, io.BytesIO(text.encode()))
    return path


# ---------------------------------------------------------------- profiles and refusals

def test_profiles_describe_the_images():
    assert DOC["default"] == "kaggle-2026"
    assert PROFILES == ["kaggle-2025", "kaggle-2026", "kaggle-2026-next", "colab-2026-py313"]
    p25, p26, nxt, p13 = (DOC["profiles"][n] for n in PROFILES)
    assert (p25["python"], p25["abi"], p25["preinstalled"]["torch"]) == ("3.11.13", "cp311", "2.6.0+cu124")
    assert (p26["python"], p26["abi"], p26["preinstalled"]["torch"]) == ("3.12.13", "cp312", "2.10.0+cu128")
    # docker-python's pending bump: the same Python as today's image, torch 2.11
    assert (nxt["python"], nxt["abi"], nxt["preinstalled"]["torch"]) == ("3.12.13", "cp312", "2.11.0+cu128")
    assert (p13["python"], p13["abi"], p13["preinstalled"]["torch"]) == ("3.13.15", "cp313", "2.11.0+cu128")
    assert "Colab's image, not Kaggle's" in p13["description"]
    for p in (p25, p26, nxt, p13):
        assert p["abi"] == "cp" + "".join(p["python"].split(".")[:2]) and "tqdm" in p["preinstalled"]
        assert {"manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux2014_x86_64",
                "manylinux_2_17_x86_64"} <= set(p["platforms"])
        assert "linux_x86_64" not in p["platforms"]
        prof = {"name": "x", **p}
        for name in ("torch", "triton", "nvidia-cudnn-cu12", "nvidia-cublas-cu12", "cuda-bindings",
                     "adam-atan2"):
            assert wb.forbidden(name, prof), name
        assert not wb.forbidden("adam-atan2-pytorch", prof)


@pytest.mark.parametrize("fname", ["x-1.0-cp311-cp311-linux_x86_64.whl",
                                   "x-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
                                   "x-1.0+cu124-py3-none-any.whl", "x-1.0-cp311-cp311-macosx_11_0_arm64.whl",
                                   "x-1.0-cp312-abi3-manylinux_2_28_x86_64.whl"])
def test_unportable_wheels_are_refused(fname):
    with pytest.raises(SystemExit, match="refusing"):
        wb.check_tags(Path(fname), wb.load_profile("kaggle-2025"))


def test_portable_wheels_pass():
    prof = wb.load_profile("kaggle-2025")
    for fname in ("x-1.0-py3-none-any.whl", "x-1.0-cp311-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                  "x-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", "x-1.0-cp38-abi3-manylinux_2_17_x86_64.whl"):
        wb.check_tags(Path(fname), prof)


def test_check_needs_the_profiles_python(tmp_path):
    """No interpreter of the image's Python version: the check says so and fails, never passes."""
    other = next(n for n, p in DOC["profiles"].items() if n != HERE_PROFILE)
    env = {**os.environ, "PYENV_ROOT": str(tmp_path / "no-pyenv"), "PATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "trmkit.wheelcheck", "--profile", other],
                       capture_output=True, text=True, timeout=60, env=env)
    minor = ".".join(DOC["profiles"][other]["python"].split(".")[:2])
    assert r.returncode == 2 and f"no Python {minor} was found" in r.stderr, r.stdout + r.stderr


# ---------------------------------------------------------------- build + offline check

@needs_profile
def test_build_ships_only_the_kit(tmp_path):
    wh = tmp_path / "wh"
    r = run("trmkit.wheelhouse", "--profile", HERE_PROFILE, "--out", str(wh))
    assert r.returncode == 0
    m = json.loads((wh / "MANIFEST.json").read_text())
    assert [f["name"] for f in m["files"]] == ["trm-kaggle-kit"]  # torch, numpy, tqdm: the image's
    kit = m["files"][0]
    assert kit["tags"] == "py3-none-any" and kit["sha256"] == wb.sha256_file(wh / kit["file"])
    assert kit["size"] == (wh / kit["file"]).stat().st_size
    assert f"trm-kaggle-kit==0.1.0 --hash=sha256:{kit['sha256']}" in (wh / "requirements.txt").read_text()
    with zipfile.ZipFile(wh / kit["file"]) as z:
        tops = {n.split("/")[0] for n in z.namelist()}
    assert {"trm", "dataset_builder"} <= tops and not tops & {"tests", "kaggle", "wheels", "notebooks"}
    assert not any(wb.forbidden(f["name"], wb.load_profile(HERE_PROFILE)) for f in m["files"])
    assert m["source"]["commit"] and {"dirty", "time"} <= set(m["source"])


def test_image_envs_follow_the_build_root_of_each_call(monkeypatch, tmp_path):
    """Read at each call: a worker that first imported trmkit.wheelcheck under another build root
    (the Kaggle sim's temporary one) still finds the stand-ins of `make kaggle-image-envs`."""
    from trmkit import wheelcheck

    monkeypatch.setenv("TRM_BUILD_DIR", str(tmp_path / "b"))
    assert wheelcheck.image_envs() == tmp_path / "b" / "image-envs"
    monkeypatch.delenv("TRM_BUILD_DIR")
    assert wheelcheck.image_envs() == wb.REPO / "build" / "image-envs"


def _stand_ins_ready(profile: str) -> None:
    from trmkit import wheelcheck

    prof = wb.load_profile(profile)
    if profile != HERE_PROFILE and not (wheelcheck.image_envs() / profile / "image-env.json").is_file():
        pytest.skip(f"no image env for {profile}: run `make kaggle-image-envs` first (.ci/run does)")
    assert wheelcheck.find_interpreter(prof) is not None, f"no Python {prof['python']} here"


@pytest.mark.parametrize("profile", PROFILES)
def test_missing_deps_fetched_then_offline_install_and_forward(tmp_path, profile):
    """General mechanism, offline, for each image on its own Python: a wheel the image lacks is
    shipped with its own missing deps; an sdist-only dep is built into a py3-none-any wheel;
    preinstalled numpy is not shipped. Then the check installs the whole wheelhouse (the kit wheel
    included) with no network, imports trm from the fresh venv and runs a forward pass under the
    image's torch."""
    _stand_ins_ready(profile)
    links = tmp_path / "links"
    links.mkdir()
    make_wheel(links, "tinydep", "1.0",
               requires=["numpy>=1.20", "sdistonly>=1.0", 'winonly; sys_platform == "win32"'])
    make_sdist(links, "sdistonly", "1.0")
    wh = tmp_path / "wh"
    r = run("trmkit.wheelhouse", "--profile", profile, "--out", str(wh), "--extra", "tinydep",
            "--find-links", str(links), "--no-index", "--no-build-isolation")
    assert r.returncode == 0
    m = json.loads((wh / "MANIFEST.json").read_text())
    assert {f["name"]: f["tags"] for f in m["files"]} == {
        "trm-kaggle-kit": "py3-none-any", "tinydep": "py3-none-any", "sdistonly": "py3-none-any"}
    numpy = DOC["profiles"][profile]["preinstalled"]["numpy"]
    assert any(n.startswith(f"numpy {numpy}") for n in m["preinstalled_not_shipped"])
    reqs = (wh / "requirements.txt").read_text()
    assert "tinydep==1.0 --hash=sha256:" in reqs and "sdistonly==1.0 --hash=sha256:" in reqs

    r = run("trmkit.wheelcheck", "--profile", profile, "--wheelhouse", str(wh))
    assert r.returncode == 0 and "3 wheel(s) installed offline" in r.stdout
    assert "logits (2, 900, 12)" in r.stdout and "/site-packages/trm/" in r.stdout
    pre = DOC["profiles"][profile]["preinstalled"]
    python = ".".join(DOC["profiles"][profile]["python"].split(".")[:2])
    assert f"python {python}." in r.stdout  # the image's Python version ran it
    if profile != HERE_PROFILE:  # ... under the image's torch and numpy versions
        assert f"torch {pre['torch'].split('+')[0]}+" in r.stdout and f"numpy {pre['numpy']}" in r.stdout
    if offline():
        assert "offline install: unshare -n" in r.stdout  # the install really had no network


@needs_profile
@pytest.mark.parametrize("extra, why", [("nvidia-cublas-cu12", "refusing to ship"),
                                        ("torch==2.13.0", "not met by the image"),
                                        ("nosuchpkg", "cannot get")])
def test_build_refuses(tmp_path, extra, why):
    links = tmp_path / "links"
    links.mkdir()
    r = run("trmkit.wheelhouse", "--profile", HERE_PROFILE, "--out", str(tmp_path / "wh"), "--extra", extra,
            "--find-links", str(links), "--no-index", "--no-build-isolation")
    assert r.returncode != 0 and why in r.stderr


def test_check_rejects_a_tampered_wheelhouse(tmp_path):
    if HERE_PROFILE is None:
        pytest.skip("no profile for this Python")
    wh = tmp_path / "wh"
    wh.mkdir()
    w = make_wheel(wh, "trm-kaggle-kit", "0.1.0")
    (wh / "MANIFEST.json").write_text(json.dumps({"profile": HERE_PROFILE, "files": [
        {"file": w.name, "name": "trm-kaggle-kit", "version": "0.1.0", "tags": "py3-none-any",
         "sha256": "0" * 64, "size": w.stat().st_size}]}))
    r = subprocess.run([sys.executable, "-m", "trmkit.wheelcheck", "--profile", HERE_PROFILE,
                        "--wheelhouse", str(wh), "--stand-ins", "link"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "differs from MANIFEST.json" in r.stderr
