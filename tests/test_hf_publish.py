"""`bundles.py hf-publish` against the loopback fake hub in tests/fakes/fake_hf.py (no network).

    .venv/bin/python -m pytest -q tests/test_hf_publish.py

The upload runs `python -m trmkit.bundles hf-publish` in a subprocess, because huggingface_hub
reads HF_ENDPOINT and HF_HUB_DISABLE_XET at import time; the refusals run in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fakes.checkpoints import make_run
from fakes.fake_hf import FakeHub
from test_bundles import bundles

REPO = Path(__file__).resolve().parents[1]
METRICS = {"pass@1": 0.1, "pass@2": 0.2, "kaggle_score": 0.15, "n_test_outputs": 20, "token_accuracy": 0.93}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs") / "x", step=11, metrics=METRICS)


def publish(env: dict, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "trmkit.bundles", "hf-publish", *args], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=300)
    print(r.stdout[-3000:], r.stderr[-3000:])
    return r


def test_publish_weights_with_model_card(tmp_path, ckpt):
    out = tmp_path / "stage"
    with FakeHub(user="tester") as hub:
        env = hub.env(tmp_path, os.environ)
        r = publish(env, "--repo", "tester/trm-arc2", "--checkpoint", str(ckpt), "--out", str(out))
        assert r.returncode == 0 and "uploaded: " + hub.url in r.stdout
        repo = hub.repos["tester/trm-arc2"]
        assert repo["type"] == "model" and repo["private"] is True  # private unless --public
        staged = {p.name: p.read_bytes() for p in (out / "weights").iterdir() if p.is_file()}
        assert "dataset-metadata.json" in staged  # Kaggle's file stays local
        del staged["dataset-metadata.json"]
        assert repo["files"] == staged  # byte for byte
        assert {"model.pt", "meta.json", "README.md", "COMMANDS.txt", "ENVIRONMENT.txt", "TRM_COMMIT.txt",
                "metrics.json"} == set(staged)
        assert set(hub.auth) == {"Bearer hf_test_token"}

        card = repo["files"]["README.md"].decode()
        fm = yaml.safe_load(card.split("\n---", 1)[0][4:])
        res = fm["model-index"][0]
        assert res["name"] == "trm-arc2"
        metrics = {m["type"]: m["value"] for m in res["results"][0]["metrics"]}
        assert metrics == {"pass@2": 0.2, "kaggle_score": 0.15, "pass@1": 0.1}  # solve rates only
        assert "0.93" not in card and fm["license"] == "mit" and fm["library_name"] == "pytorch"

        r = publish(env, "--repo", "tester/trm-arc2", "--out", str(out))  # exists (409) + reuse the stage
        assert r.returncode == 0 and len(repo["commits"]) == 2
    assert ("POST", "/api/repos/create") in hub.calls and ("POST", "/api/validate-yaml") in hub.calls


def test_no_token_stages_and_stops(tmp_path, ckpt, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # never contacted
    out = tmp_path / "stage"
    assert bundles.main(["hf-publish", "--repo", "me/x", "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no Hugging Face token") and len(err.splitlines()) == 1
    assert (out / "weights" / "README.md").is_file()
    assert bundles.main(["hf-publish", "--repo", "me/x", "--out", str(out), "--dry-run"]) == 0


def test_secret_in_provenance_refuses_upload(tmp_path, monkeypatch, capsys):
    run = tmp_path / "runs" / "leaky"
    ckpt = make_run(run, step=2)
    token = "".join(["hf", "_", "Zq9" * 12])  # built at run time: no token literal in this file
    (run / "COMMANDS.txt").write_text(f"python -m trm.train --hub-token {token}\n")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert bundles.main(["hf-publish", "--repo", "me/x", "--checkpoint", str(ckpt),
                         "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "weights/COMMANDS.txt: looks like a Hugging Face token" in err and token not in err


def test_card_without_metrics_says_so(tmp_path):
    from trmkit.model_card import render_card, solve_rates

    card = render_card({"step": 3}, None, name="t", metrics_note="no metrics.json found")
    fm = yaml.safe_load(card.split("\n---", 1)[0][4:])
    assert "model-index" not in fm and "No solve rate was measured" in card
    assert solve_rates({"token_accuracy": 0.9, "exact_row_accuracy": 0.5, "pass@2": None, "x": True}) == []
    assert json.dumps(solve_rates({"pass@2": 0.5})) == '[["pass@2", "pass@2 (per-task macro average)", 0.5]]'
