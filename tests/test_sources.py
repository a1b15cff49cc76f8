"""trm.sources.resolve_checkpoint: local kit dirs and upstream files, and hf:// against the loopback
fake hub (tests/fakes/fake_hf.py) with the real huggingface_hub client. Nothing leaves 127.0.0.1.

    .venv/bin/python -m pytest -q tests/test_sources.py

huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE / HF_TOKEN at import, so every hf:// resolution
runs `python -m trm.sources SPEC` in a subprocess with its own environment and HF cache; the path it
prints is then loaded here with trm.checkpoint.load_checkpoint.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from fakes.fake_hf import FakeHub

from trm.checkpoint import CheckpointError, kit_key_to_upstream, load_checkpoint, save_checkpoint
from trm.data import load_split
from trm.model import TRM, ModelConfig
from trm.sources import arch_config, parse_hf, resolve_checkpoint

REPO = Path(__file__).resolve().parents[1]
ARC = "arcprize/trm_arc_prize_verification"  # the published layout, in the fake hub
STEP = "arc_v2_public/step_723914"


def tiny(seed: int, rows: int = 6) -> TRM:
    torch.manual_seed(seed)
    m = TRM(ModelConfig(hidden_size=32, num_heads=2, n_layers=1, n_outer_cycles=1, n_latent_steps=1,
                        halt_max_steps=2, puzzle_emb_ndim=32, num_puzzle_identifiers=rows,
                        forward_dtype="float32"))
    with torch.no_grad():
        m.puzzle_emb.weights[1:].normal_()
    return m


def upstream_files(model: TRM, folder: str = "arc_v2_public", name: str = "step_723914",
                   config: bool = True) -> dict[str, bytes]:
    """What upstream's pretrain.py leaves in a run dir: a compiled-model state_dict + all_config.yaml."""
    buf = io.BytesIO()
    torch.save({kit_key_to_upstream(k): v for k, v in model.state_dict().items()}, buf)
    files = {f"{folder}/{name}": buf.getvalue()}
    if config:
        files[f"{folder}/all_config.yaml"] = yaml.safe_dump({"arch": model.config.to_upstream(),
                                                            "lr": 1e-4}).encode()
    return files


def same_weights(a: TRM, b: TRM) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def resolve(env: dict, spec: str, *args: str, **override) -> subprocess.CompletedProcess:
    env = {**env, "PYTHONPATH": str(REPO), **override}
    env = {k: v for k, v in env.items() if v is not None}
    r = subprocess.run([sys.executable, "-m", "trm.sources", spec, *args], env=env, capture_output=True,
                       text=True, timeout=180, cwd=REPO)
    print(r.stdout[-2000:], r.stderr[-2000:])
    return r


def resolved(r: subprocess.CompletedProcess) -> Path:
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip())


def error(r: subprocess.CompletedProcess) -> str:
    """The resolver's one-line error (exit 2, a single `error:` line on stderr)."""
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [s for s in r.stderr.splitlines() if s.startswith("error: ")]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def hub():
    with FakeHub(user="tester") as h:
        yield h


# --------------------------------------------------------------------------- hf://


def test_upstream_file_from_hub_loads_and_revision_is_honoured(hub, tmp_path):
    old, new = tiny(seed=1), tiny(seed=2)
    oid_old = hub.put(ARC, upstream_files(old))
    hub.put(ARC, upstream_files(new))
    env = hub.env(tmp_path, os.environ, token=None)  # a public repo: no token needed

    path = resolved(resolve(env, f"hf://{ARC}/{STEP}"))
    assert path.is_relative_to(tmp_path / "hf-home")  # in the HF cache
    assert path.name == "step_723914" and (path.parent / "all_config.yaml").is_file()
    model, meta = load_checkpoint(path)
    assert meta["format"] == "upstream" and same_weights(model, new) and model.config == new.config

    path_old = resolved(resolve(env, f"hf://{ARC}/{STEP}@{oid_old}"))
    assert oid_old in path_old.parts and path_old != path
    assert same_weights(load_checkpoint(path_old)[0], old)
    assert ("HEAD", f"/{ARC}/resolve/{oid_old}/{STEP}") in hub.calls

    # once cached, offline works and asks nothing of the hub, even with the endpoint gone
    n = len(hub.calls)
    assert resolved(resolve(env, f"hf://{ARC}/{STEP}", HF_HUB_OFFLINE="1",
                            HF_ENDPOINT="http://127.0.0.1:9")) == path
    assert len(hub.calls) == n


def test_kit_checkpoint_directory_from_hub(hub, tmp_path):
    model = tiny(seed=3)
    kit = save_checkpoint(tmp_path / "kit" / "step_5", model, meta={"step": 5})
    files = {p.name: p.read_bytes() for p in kit.iterdir()}
    hub.put("tester/trm-kit", {f"runs/step_5/{k}": v for k, v in files.items()} | {"README.md": b"# card\n"})
    hub.put("tester/trm-root", files)  # trmkit/bundles.py hf-publish uploads the checkpoint at the root
    env = hub.env(tmp_path, os.environ)

    path = resolved(resolve(env, "hf://tester/trm-kit/runs/step_5"))
    assert path.is_dir() and sorted(p.name for p in path.iterdir()) == sorted(files)
    assert not (path.parent.parent / "README.md").exists()  # only the folder was fetched
    loaded, meta = load_checkpoint(path)  # checks every file's sha256 against meta.json
    assert meta["step"] == 5 and same_weights(loaded, model)

    root = resolved(resolve(env, "hf://tester/trm-root"))
    assert same_weights(load_checkpoint(root)[0], model)

    # a file of the kit dir is refused with the folder to name instead
    msg = error(resolve(env, "hf://tester/trm-kit/runs/step_5/model.pt"))
    assert "inside the kit checkpoint runs/step_5" in msg and "hf://tester/trm-kit/runs/step_5" in msg

    assert resolved(resolve(env, "hf://tester/trm-kit/runs/step_5", HF_HUB_OFFLINE="1")) == path


def test_missing_file_revision_and_config(hub, tmp_path):
    oid = hub.put(ARC, upstream_files(tiny(seed=1))
                  | upstream_files(tiny(seed=1), folder="bare", config=False))
    env = hub.env(tmp_path, os.environ)
    msg = error(resolve(env, f"hf://{ARC}/arc_v2_public/step_1"))
    assert f"no file arc_v2_public/step_1 in {ARC} at revision main" in msg
    msg = error(resolve(env, f"hf://{ARC}/{STEP}@v9"))
    assert f"no revision v9 in {ARC}" in msg
    msg = error(resolve(env, f"hf://{ARC}/bare/step_723914@{oid}"))
    assert f"no bare/all_config.yaml beside bare/step_723914 in {ARC} at revision {oid}" in msg
    # with the config given explicitly, the bare file resolves (and loads with that config)
    cfg = tmp_path / "all_config.yaml"
    cfg.write_bytes(upstream_files(tiny(seed=1))["arc_v2_public/all_config.yaml"])
    path = resolved(resolve(env, f"hf://{ARC}/bare/step_723914", "--config", str(cfg)))
    assert same_weights(load_checkpoint(path, config=arch_config(cfg))[0], tiny(seed=1))


def test_private_repo_needs_token(hub, tmp_path):
    hub.put("tester/private-trm", upstream_files(tiny(seed=4)), private=True)
    spec = f"hf://tester/private-trm/{STEP}"
    msg = error(resolve(hub.env(tmp_path / "anon", os.environ, token=None), spec))
    assert "cannot read tester/private-trm (HTTP 401" in msg and "set HF_TOKEN" in msg
    msg = error(resolve(hub.env(tmp_path / "wrong", os.environ, token="hf_wrong"), spec))
    assert "HTTP 401" in msg and "your token (HF_TOKEN) can read it" in msg

    path = resolved(resolve(hub.env(tmp_path / "ok", os.environ), spec))
    assert same_weights(load_checkpoint(path)[0], tiny(seed=4))
    assert hub.auth[-1] == f"Bearer {hub.token}"


def test_offline_with_empty_cache(hub, tmp_path):
    hub.put(ARC, upstream_files(tiny(seed=1)))
    env = hub.env(tmp_path, os.environ)
    msg = error(resolve(env, f"hf://{ARC}/{STEP}", HF_HUB_OFFLINE="1"))
    assert "no network (HF_HUB_OFFLINE is set) and not in the Hugging Face cache" in msg
    assert "set HF_HUB_OFFLINE=0" in msg and hub.calls == []


@pytest.mark.slow
def test_no_network(tmp_path):
    """A closed port: the client retries for ~25 s before it gives up."""
    with FakeHub() as hub:
        env = hub.env(tmp_path, os.environ)
    msg = error(resolve(env, f"hf://{ARC}/{STEP}"))  # the fake is closed: nothing listens there now
    assert f"no network ({hub.url} cannot be reached) and not in the Hugging Face cache" in msg


def test_evaluate_takes_hf_checkpoints(hub, tmp_path, golden):
    """python -m trm.evaluate --checkpoint hf://... (and --ensemble) on the golden built dataset."""
    data = golden / "arc_build" / "output"
    rows = json.loads((data / "train" / "dataset.json").read_text())["num_puzzle_identifiers"]
    model = tiny(seed=5, rows=rows)
    hub.put(ARC, upstream_files(model))
    kit = save_checkpoint(tmp_path / "kit", model)
    env = {**hub.env(tmp_path, os.environ), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "eval"
    r = subprocess.run([sys.executable, "-m", "trm.evaluate", "--checkpoint", f"hf://{ARC}/{STEP}",
                        "--ensemble", str(kit), "--data", str(data), "--output-dir", str(out),
                        "--batch-size", "16", "--device", "cpu", "--pictures", "0"],
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_checkpoints"] == 2 and metrics["checkpoint"] == f"hf://{ARC}/{STEP},{kit}"
    # every test row, once per checkpoint
    assert metrics["n_rows"] == 2 * load_split(data, "test").num_examples
    assert (out / "submission.json").is_file()
    assert ("GET", f"/{ARC}/resolve/main/{STEP}") in hub.calls


# --------------------------------------------------------------------------- local paths and specs


def test_local_kit_dir_and_upstream_file(tmp_path):
    model = tiny(seed=6)
    kit = save_checkpoint(tmp_path / "run" / "checkpoints" / "step_5", model)
    assert resolve_checkpoint(kit) == kit and resolve_checkpoint(str(kit)) == kit

    for name, data in upstream_files(model, folder="up").items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    up = tmp_path / "up" / "step_723914"
    assert resolve_checkpoint(up) == up and same_weights(load_checkpoint(up)[0], model)

    # without all_config.yaml beside it: refused, unless a config is given
    cfg = tmp_path / "elsewhere.yaml"
    (up.parent / "all_config.yaml").rename(cfg)
    with pytest.raises(CheckpointError, match="has no all_config.yaml beside it"):
        resolve_checkpoint(up)
    assert resolve_checkpoint(up, config=cfg) == up
    assert same_weights(load_checkpoint(up, config=arch_config(cfg))[0], model)
    with pytest.raises(CheckpointError, match="config .*missing.yaml not found"):
        resolve_checkpoint(up, config=tmp_path / "missing.yaml")


def test_local_paths_that_are_not_checkpoints(tmp_path):
    kit = save_checkpoint(tmp_path / "run" / "checkpoints" / "step_5", tiny(seed=7))
    with pytest.raises(CheckpointError, match="without meta.json.*a run directory is resumed with trm.train"):
        resolve_checkpoint(tmp_path / "run")
    with pytest.raises(CheckpointError, match=r"name one of its upstream files \(step_5\)"):
        resolve_checkpoint(kit.parent)
    with pytest.raises(CheckpointError, match="inside the kit checkpoint"):
        resolve_checkpoint(kit / "model.pt")
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(tmp_path / "nope")


def test_parse_hf_spec():
    assert parse_hf(f"hf://{ARC}/{STEP}") == (ARC, STEP, "main")
    assert parse_hf("hf://a/b/c/d@v1.0") == ("a/b", "c/d", "v1.0")
    assert parse_hf("hf://a/b") == ("a/b", "", "main")
    for bad in ("hf://a", "hf://a/b/c@", "hf://a//c"):
        with pytest.raises(CheckpointError, match="expected hf://owner/repo/path/in/repo"):
            parse_hf(bad)


def test_hf_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # `import huggingface_hub` raises ImportError
    with pytest.raises(CheckpointError, match="pip install huggingface_hub"):
        resolve_checkpoint(f"hf://{ARC}/{STEP}")
