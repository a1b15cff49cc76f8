"""Kaggle bundles without any server: staging, metadata, secret scan, credentials, dry run, model card.

    .venv/bin/python -m pytest -q tests/test_bundles.py

bundles.py is loaded by path (the top-level kaggle/ folder is not a package: it must never
shadow the real `kaggle` CLI package). Repos are throwaway git repos under tmp_path; the weights
bundle uses a real tiny kit checkpoint (tests/fakes/checkpoints.py). Planted secrets are built at
run time, so this file itself stays clean for the repo bundle's own scan.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from fakes.checkpoints import make_run
from fakes.clock import DAY, shift_clock

REPO = Path(__file__).resolve().parents[1]


from trmkit import bundles  # noqa: E402


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    r = tmp_path / "src"
    (r / "pkg").mkdir(parents=True)
    (r / "README.md").write_text("# demo\nhf_publish and kaggle/templates are fine words\n")
    (r / "pkg" / "mod.py").write_text("X = 1\n")
    (r / ".gitignore").write_text("ignored.txt\n")
    (r / "ignored.txt").write_text("not in the bundle\n")
    git(r, "init", "-q")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "init")
    return r


@pytest.fixture
def wheelhouse(tmp_path) -> Path:
    """A stand-in wheelhouse (trmkit/wheelhouse.py output shape) so these tests need no pip."""
    wh = tmp_path / "wh"
    wh.mkdir()
    w = wh / "trm_kaggle_kit-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(w, "w") as z:
        z.writestr("trm/__init__.py", "")
    files = [{"file": w.name, "name": "trm-kaggle-kit", "version": "0.1.0", "tags": "py3-none-any",
              "sha256": bundles.sha256_file(w), "size": w.stat().st_size}]
    (wh / "MANIFEST.json").write_text(json.dumps({"profile": "kaggle-2026", "files": files}))
    (wh / "requirements.txt").write_text(f"trm-kaggle-kit==0.1.0 --hash=sha256:{files[0]['sha256']}\n")
    return wh


@pytest.fixture
def no_creds(tmp_path, monkeypatch):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_API_V1_TOKEN",
                "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def push(*args, out: Path, repo: Path, wh: Path) -> int:
    return bundles.main(["push", "--out", str(out), "--repo-dir", str(repo), "--wheels-dir", str(wh), *args])


# ---------------------------------------------------------------- staging

def test_stage_wheels_and_repo(tmp_path, repo, wheelhouse, no_creds, capsys):
    out = tmp_path / "stage"
    assert push("--owner", "someone", "--dry-run", out=out, repo=repo, wh=wheelhouse) == 0
    head = git(repo, "rev-parse", "HEAD")
    staged = {p.relative_to(out / "repo").as_posix() for p in (out / "repo").rglob("*") if p.is_file()}
    assert staged == {"README.md", "pkg/mod.py", ".gitignore", "COMMIT", "dataset-metadata.json"}
    assert (out / "repo" / "COMMIT").read_text() == head + "\n"
    meta = json.loads((out / "repo" / "dataset-metadata.json").read_text())
    assert meta["id"] == "someone/trm-kit-repo" and 6 <= len(meta["title"]) <= 50
    assert meta["licenses"] == [{"name": "other"}] and head in meta["description"]  # MIT: not a Kaggle name
    assert "Licence: MIT." in meta["description"] and bundles.KIT_LICENSE == "MIT"
    wmeta = json.loads((out / "wheels" / "dataset-metadata.json").read_text())
    assert wmeta["id"] == "someone/trm-kit-wheels" and "kaggle-2026" in wmeta["subtitle"]
    assert sorted(p.name for p in (out / "wheels").iterdir()) == [
        "MANIFEST.json", "dataset-metadata.json", "requirements.txt", "trm_kaggle_kit-0.1.0-py3-none-any.whl"]
    text = capsys.readouterr().out
    assert "kaggle datasets create -p" in text and "kaggle datasets version -p" in text
    assert "weights: skipped (no --checkpoint" in text and "dry run" in text
    assert not (out / "weights").exists()


def test_dirty_tree_refused_unless_forced(tmp_path, repo, wheelhouse, no_creds, capsys):
    (repo / "pkg" / "mod.py").write_text("X = 2\n")
    out = tmp_path / "stage"
    assert push("--dry-run", "--bundles", "repo", out=out, repo=repo, wh=wheelhouse) == 1
    assert "uncommitted changes" in capsys.readouterr().err
    assert push("--dry-run", "--bundles", "repo", "--force", out=out, repo=repo, wh=wheelhouse) == 0
    assert (out / "repo" / "pkg" / "mod.py").read_text() == "X = 1\n"  # HEAD, not the dirty file


@pytest.mark.parametrize("license, kaggle", [("CC0-1.0", "CC0-1.0"), ("MIT-0", "other")])
def test_license_is_a_setting(tmp_path, repo, wheelhouse, no_creds, license, kaggle):
    """A prize entry's code must be public-domain-like (CC0-1.0 or MIT-0): the bundles say what is asked."""
    out = tmp_path / "stage"
    assert push("--dry-run", "--bundles", "repo,wheels", "--license", license,
                out=out, repo=repo, wh=wheelhouse) == 0
    for b in ("repo", "wheels"):
        meta = json.loads((out / b / "dataset-metadata.json").read_text())
        assert meta["licenses"] == [{"name": kaggle}] and f"Licence: {license}." in meta["description"]


def test_license_must_be_an_identifier(tmp_path, repo, wheelhouse, no_creds, capsys):
    with pytest.raises(SystemExit) as e:
        push("--dry-run", "--license", "MIT or whatever", out=tmp_path / "s", repo=repo, wh=wheelhouse)
    assert e.value.code == 2 and "an SPDX identifier" in capsys.readouterr().err


@pytest.mark.parametrize("prefix", ["", "Trm_Kit", "x" * 46, "-bad", "a b"])
def test_slug_validation(tmp_path, repo, wheelhouse, no_creds, capsys, prefix):
    assert push("--dry-run", "--bundles", "repo", f"--slug-prefix={prefix}", out=tmp_path / "s", repo=repo,
                wh=wheelhouse) == 1
    assert "slug" in capsys.readouterr().err


def test_templates_have_no_personal_names():
    for t in (REPO / "kaggle" / "templates").glob("*-dataset-metadata.json"):
        meta = json.loads(t.read_text())
        assert meta["id"] == "${owner}/${slug}" and len(meta["licenses"]) == 1, t


# ---------------------------------------------------------------- secrets

def planted() -> dict[str, str]:
    """name -> content, assembled at run time (str.join is not constant-folded into the .pyc), so
    no secret-shaped literal sits in this file or its bytecode."""
    j = "".join
    return {
        "kaggle (1).json": "{}",
        "access_token": "x",
        ".env": "X=1",
        "deploy_key.txt": j(["-----BEGIN OPENSSH ", "PRIVATE KEY-----\nabc\n"]),
        "notes/token.txt": j(["token: KGAT", "_", "a1B2" * 6]),
        "notes/hf.md": j(["use hf", "_", "Ab3" * 12]),
        "conf/settings.json": j(['{"username": "me", "key', '": "', "0123456789abcdef" * 2, '"}']),
        "conf/aws.cfg": j(["aws_access_key_id = AKIA", "ABCDEFGHIJKLMNOP"]),
    }


def test_planted_secrets_refuse_the_push(tmp_path, repo, wheelhouse, no_creds, capsys):
    for name, text in planted().items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    with zipfile.ZipFile(repo / "archive.zip", "w") as z:
        z.writestr("inner/kaggle.json", "{}")
    git(repo, "add", "-f", "-A")
    git(repo, "commit", "-qm", "oops")
    assert push("--dry-run", "--bundles", "repo", out=tmp_path / "s", repo=repo, wh=wheelhouse) == 1
    err = capsys.readouterr().err
    assert "refusing to publish" in err
    for expect in ["kaggle (1).json: a credentials file name", "access_token: a credentials file name",
                   ".env: a credentials file name", "deploy_key.txt: looks like a private key",
                   "notes/token.txt: looks like a Kaggle API token",
                   "notes/hf.md: looks like a Hugging Face token",
                   "conf/settings.json: looks like a Kaggle API key",
                   "conf/aws.cfg: looks like an AWS access key id",
                   "archive.zip!inner/kaggle.json: a credentials file name"]:
        assert expect in err, expect


def test_clean_tree_and_this_repo_scan_clean(repo):
    assert bundles.scan_secrets(repo) == []
    # what the kit's repo bundle will hold (tracked + not ignored; this file included) must pass too
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    files = [REPO / f for f in listed if f and (REPO / f).is_file()]
    assert bundles.scan_secrets(REPO, files) == []


# ---------------------------------------------------------------- credentials

def test_missing_credentials_stage_plan_and_fail(tmp_path, repo, wheelhouse, no_creds, capsys):
    out = tmp_path / "stage"
    assert push(out=out, repo=repo, wh=wheelhouse) == 2
    cap = capsys.readouterr()
    assert "push plan" in cap.out and "YOUR_KAGGLE_USERNAME/trm-kit-repo" in cap.out  # the plan, then 1 line
    assert len(cap.err.splitlines()) == 1 and cap.err.startswith("error: no Kaggle credentials")
    for needle in ("KAGGLE_USERNAME and KAGGLE_KEY", "~/.kaggle/kaggle.json", "chmod 600",
                   "KAGGLE_API_TOKEN"):
        assert needle in cap.err, needle
    assert (out / "repo" / "COMMIT").is_file() and (out / "wheels" / "MANIFEST.json").is_file()


def test_kaggle_json_gives_owner_and_is_never_copied(tmp_path, repo, wheelhouse, no_creds, capsys,
                                                     monkeypatch):
    kdir = tmp_path / "home" / ".kaggle"
    kdir.mkdir(parents=True)
    secret = "f" * 32
    (kdir / "kaggle.json").write_text(json.dumps({"username": "jsonuser", "key": secret}))
    (kdir / "kaggle.json").chmod(0o600)
    out = tmp_path / "stage"
    assert push("--dry-run", out=out, repo=repo, wh=wheelhouse) == 0
    text = capsys.readouterr().out
    assert "jsonuser/trm-kit-repo" in text and secret not in text
    assert str(kdir / "kaggle.json") in text  # where, never what
    assert all(secret not in p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())


# ---------------------------------------------------------------- weights + model card

def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("\n---", 1)[0][4:])


def test_weights_bundle_card_and_provenance(tmp_path, repo, wheelhouse, no_creds):
    ckpt = make_run(tmp_path / "runs" / "x", step=5, metrics={
        "pass@1": 0.125, "pass@2": 0.25, "pass@1000": None, "kaggle_score": 0.2, "kaggle_correct": 1,
        "n_test_outputs": 5, "token_accuracy": 0.9, "exact_row_accuracy": 0.5})
    out = tmp_path / "stage"
    assert push("--dry-run", "--bundles", "weights", "--owner", "me", "--checkpoint", str(ckpt),
                out=out, repo=repo, wh=wheelhouse) == 0
    w = out / "weights"
    assert sorted(p.name for p in w.iterdir()) == sorted([
        "COMMANDS.txt", "ENVIRONMENT.txt", "README.md", "TRM_COMMIT.txt", "dataset-metadata.json",
        "meta.json", "metrics.json", "model.pt"])
    meta = json.loads((w / "meta.json").read_text())
    assert meta["kind"] == "slim" and meta["step"] == 5 and not Path(meta["source"]).is_absolute()
    assert json.loads((w / "metrics.json").read_text())["checkpoint"] == "step_5"
    card = (w / "README.md").read_text()
    fm = front_matter(card)
    metrics = {m["type"]: m["value"] for m in fm["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"pass@2": 0.25, "kaggle_score": 0.2, "pass@1": 0.125}
    assert "accuracy" not in json.dumps(fm) and "0.9" not in card
    dmeta = json.loads((w / "dataset-metadata.json").read_text())
    assert dmeta["id"] == "me/trm-kit-weights" and "step 5" in dmeta["description"]
    assert str(tmp_path) not in (w / "README.md").read_text() + (w / "dataset-metadata.json").read_text()

    # the slim export loads back through the kit's loader
    from trm.checkpoint import load_checkpoint

    model, _ = load_checkpoint(w, num_puzzle_identifiers=3)
    assert model.config.num_puzzle_identifiers == 3


def test_metrics_of_another_step_or_an_ensemble_are_not_published(tmp_path, repo, wheelhouse, no_creds):
    run = tmp_path / "runs" / "y"
    ckpt = make_run(run, step=7)
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps({"step": 3, "pass@2": 0.5, "n_checkpoints": 1}))
    (run / "metrics.json").write_text(json.dumps({"step": 7, "pass@2": 0.6, "n_checkpoints": 2}))
    out = tmp_path / "stage"
    assert push("--dry-run", "--bundles", "weights", "--checkpoint", str(ckpt), out=out, repo=repo,
                wh=wheelhouse) == 0
    card = (out / "weights" / "README.md").read_text()
    assert ("model-index" not in front_matter(card) and "measured at step 3" in card
            and "ensemble of 2" in card)
    assert not (out / "weights" / "metrics.json").exists()

    (run / "eval" / "metrics.json").write_text(json.dumps({"step": 7, "pass@2": 0.5, "n_checkpoints": 1}))
    assert push("--dry-run", "--bundles", "weights", "--checkpoint", str(ckpt), out=out, repo=repo,
                wh=wheelhouse) == 0  # training's own eval of step 7 (run/eval/) is found and used
    fm = front_matter((out / "weights" / "README.md").read_text())
    assert fm["model-index"][0]["results"][0]["metrics"][0] == {
        "type": "pass@2", "value": 0.5, "name": "pass@2 (per-task macro average)"}


def kernel_push(*args) -> int:
    from trmkit import kernel

    return kernel.main(["push", "--owner", "someone", "--dry-run", *args])


def test_the_kits_kernel_template_renders(tmp_path, no_creds):
    from trmkit.bundles import PLACEHOLDER

    nb = REPO / "kaggle" / "trm_arc2_inference_notebook.ipynb"
    out = tmp_path / "stage"
    assert kernel_push("--out", str(out)) == 0
    meta = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    assert meta["id"] == "someone/trm-arc2-inference" and meta["title"] == "trm-arc2-inference"
    assert meta["dataset_sources"] == ["someone/trm-kit-wheels", "someone/trm-kit-repo",
                                       "someone/trm-kit-weights"]
    assert meta["competition_sources"] == ["arc-prize-2026-arc-agi-2"] and meta["enable_internet"] is False
    assert meta["machine_shape"] == "NvidiaL4" and meta["enable_gpu"] is True  # default: 4xL4
    assert meta["docker_image_pinning_type"] == "original"
    assert meta["code_file"] == nb.name and (out / "kernel" / nb.name).read_bytes() == nb.read_bytes()
    assert PLACEHOLDER.search(json.dumps(meta)) is None  # no placeholder left


def test_kernel_machine_shapes(tmp_path, no_creds, capsys):
    """Kaggle's machine names: T4x2 is NvidiaTeslaT4; a retired, internal or unknown name is refused
    in one line that names the valid ones, and nothing is staged."""
    from trmkit.kernel import MACHINE_SHAPES

    out = tmp_path / "stage"
    assert kernel_push("--out", str(out), "--accelerator", "NvidiaTeslaT4",
                       "--competition", "some-other-comp", "--image-pinning", "latest") == 0
    meta = json.loads((out / "kernel" / "kernel-metadata.json").read_text())
    # an `accelerator` key is ignored
    assert meta["machine_shape"] == "NvidiaTeslaT4" and "accelerator" not in meta
    assert (meta["competition_sources"] == ["some-other-comp"]
            and meta["docker_image_pinning_type"] == "latest")
    assert "NvidiaTeslaT4 (T4 x2 (16 GB each): 2 processes, fp16" in capsys.readouterr().out
    assert list(MACHINE_SHAPES)[:2] == ["NvidiaL4", "NvidiaTeslaT4"]
    for bad, why in [("NvidiaTeslaT4Highmem", "internal Kaggle pool"), ("NvidiaTeslaP100", "retired"),
                     ("TpuV5E8", "no CUDA GPU"), ("NvidiaL4x4", "not a Kaggle machine shape")]:
        shutil.rmtree(out, ignore_errors=True)
        assert kernel_push("--out", str(out), "--accelerator", bad) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and why in err and ", ".join(MACHINE_SHAPES) in err, err
        assert not (out / "kernel").exists()


def test_kernel_push_refuses_a_notebook_papermill_cannot_start(tmp_path, no_creds, capsys):
    nb = tmp_path / "trm_x.ipynb"
    nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": []}))
    assert kernel_push("--out", str(tmp_path / "stage"), "--notebook", str(nb)) == 1
    err = capsys.readouterr().err
    assert "no kernelspec name" in err and "No kernel name found" in err and err.count("\n") == 1


def test_one_competition_slug_everywhere():
    """trm/competition.py is the only place the default slug is written: Python users import it,
    the Makefile reads it (checked through make itself), and docs/kaggle.md names the same slug."""
    from trm.competition import COMPETITION

    assert COMPETITION == "arc-prize-2026-arc-agi-2"
    from trmkit import kernel
    assert kernel.COMPETITION is COMPETITION
    from trmkit import fetch
    assert fetch.COMPETITION is COMPETITION
    def make_n(*args) -> list[str]:  # the commands `make -n` would run, whitespace-normalised
        out = subprocess.run(["make", "-n", "-C", str(REPO), *args], capture_output=True, text=True,
                             check=True,
                             env={"PATH": "/usr/bin:/bin", "VENV": str(REPO / ".no-venv")}).stdout
        return [" ".join(line.split()) for line in out.splitlines()]

    assert any(c.endswith(f"kernel push --competition {COMPETITION}") for c in make_n("kaggle-kernel"))
    assert any(c.endswith(f"kernel submit --competition {COMPETITION} --version 4 --wait")
               for c in make_n("kaggle-submit", "VERSION=4", "WAIT=1"))
    assert any(c.endswith(f"kernel submit --competition {COMPETITION} --version 4 --wait --wait-hours 30")
               for c in make_n("kaggle-submit", "VERSION=4", "WAIT=1", "WAIT_HOURS=30"))
    assert any(c.endswith(f"--competition {COMPETITION} --out data/kaggle/{COMPETITION}")
               for c in make_n("data-kaggle"))
    assert any("trmkit.sim --profile kaggle-2026-next --competition x-y-z" in c
               for c in make_n("kaggle-sim", "COMP=x-y-z", "PROFILE=kaggle-2026-next"))
    assert any(c.endswith("kernel push --competition x-y-z --accelerator NvidiaTeslaT4")
               for c in make_n("kaggle-kernel", "COMP=x-y-z", "ACCELERATOR=NvidiaTeslaT4"))
    makefile = (REPO / "Makefile").read_text()
    assert "arc-prize-20" not in makefile  # no second copy of a slug
    for p in ["trmkit/kernel.py", "trmkit/sim.py", "trmkit/fetch.py"]:
        src = (REPO / p).read_text()
        assert "from trm.competition import COMPETITION" in src and '"arc-prize-2026' not in src, p
    assert f"`{COMPETITION}`" in (REPO / "docs" / "kaggle.md").read_text()

# ---------------------------------------------------------------- determinism

def test_staging_twice_gives_identical_bytes(tmp_path, repo, wheelhouse, no_creds, monkeypatch):
    """Same checkpoint, tree and wheelhouse -> every staged file byte-identical, so an unchanged
    push is skipped for all three bundles. Staged again a day later by the clock: a clock-based field
    would show."""
    ckpt = make_run(tmp_path / "runs" / "x", step=5, metrics={"pass@2": 0.25, "kaggle_score": 0.2})
    created = json.loads((ckpt / "meta.json").read_text())["created"]
    trees, hashes = [], []
    for i in range(2):
        out = tmp_path / f"stage{i}"
        assert push("--dry-run", "--owner", "me", "--checkpoint", str(ckpt),
                    out=out, repo=repo, wh=wheelhouse) == 0
        trees.append({p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()})
        hashes.append({b: bundles.content_hash(out / b) for b in bundles.BUNDLES})
        shift_clock(monkeypatch, DAY)
    assert {p.split("/")[0] for p in trees[0]} == set(bundles.BUNDLES)
    assert sorted(trees[0]) == sorted(trees[1])
    assert [p for p in trees[0] if trees[0][p] != trees[1][p]] == []
    assert hashes[0] == hashes[1]
    # provenance comes from the checkpoint itself, not from the clock at staging
    assert json.loads(trees[0]["weights/meta.json"])["created"] == created
