"""Kit checkpoints: round trip, integrity checks, puzzle-table checks, slim export, upstream import.

Run: .venv/bin/python -m pytest -q tests/test_checkpoint.py

Uses tiny random models (seq_len 16) and temp dirs; the upstream-import tests also read
golden/model/step_0 and skip without the golden data.
"""

from __future__ import annotations

import json
import re
import shutil
import sys

import numpy as np
import pytest
import torch

from trm.checkpoint import (
    CheckpointError,
    check_checkpoint,
    dataset_fingerprint,
    export_slim,
    kit_key_to_upstream,
    load_checkpoint,
    load_train_state,
    save_checkpoint,
    upstream_key_to_kit,
)
from trm.model import TRM, ModelConfig, TRMWithLoss


def make_model(rows=7, seed=0) -> TRM:
    torch.manual_seed(seed)
    cfg = ModelConfig(hidden_size=32, num_heads=2, expansion=2.0, n_outer_cycles=2, n_latent_steps=2,
                      halt_max_steps=2, puzzle_emb_ndim=32, puzzle_emb_len=2, num_puzzle_identifiers=rows,
                      seq_len=16, forward_dtype="float32")
    model = TRM(cfg)
    with torch.no_grad():
        model.puzzle_emb.weights.normal_()
        model.puzzle_emb.weights[0] = 0
        model.q_head.weight.normal_(0, 0.1)
    return model


def make_dataset(root, rows, tag="a"):
    (root / "train").mkdir(parents=True)
    ids = ["<blank>"] + [f"{tag}{i}" for i in range(1, rows)]
    (root / "identifiers.json").write_text(json.dumps(ids))
    (root / "train" / "dataset.json").write_text(json.dumps({"num_puzzle_identifiers": rows, "seq_len": 16}))
    return root


def batch(B=3, ids=(1, 2, 3)):
    g = torch.Generator().manual_seed(5)
    return {"inputs": torch.randint(0, 12, (B, 16), generator=g, dtype=torch.int32),
            "labels": torch.randint(0, 12, (B, 16), generator=g, dtype=torch.int32),
            "puzzle_identifiers": torch.tensor(ids, dtype=torch.int32)}


@torch.no_grad()
def eval_logits(model, b=None):
    b = b or batch()
    model.eval()
    _, out = model(model.initial_carry(b), b)
    return out["logits"]


def test_round_trip_identical_outputs_and_meta(tmp_path):
    model = make_model()
    ds = make_dataset(tmp_path / "data", rows=7)
    path = save_checkpoint(tmp_path / "ck", TRMWithLoss(model),
                           meta={"step": 12, "train_config": {"lr": 1e-4}}, dataset_dir=ds)
    loaded, meta = load_checkpoint(path, dataset_dir=ds)
    assert torch.equal(eval_logits(model), eval_logits(loaded))
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]) and v.dtype == loaded.state_dict()[k].dtype, k
    assert loaded.config == model.config
    assert meta["step"] == 12 and meta["train_config"] == {"lr": 1e-4} and meta["weights"] == "raw"
    assert meta["dataset"]["fingerprint"] == dataset_fingerprint(ds)
    assert set(meta["files"]) == {"model.pt"} and len(meta["files"]["model.pt"]["sha256"]) == 64
    assert "git" in meta and sorted(p.name for p in tmp_path.iterdir()) == ["ck", "data"]  # no temp dirs left


def test_overwrite_ema_weights_and_train_state(tmp_path):
    model = make_model()
    save_checkpoint(tmp_path / "ck", model)  # an older save at the same path is replaced atomically
    ema = {f"_orig_mod.model.{n}": p.detach() + 1 for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_state = {"model": model.state_dict(), "optimizers": [opt.state_dict()], "step": 3,
                   "rng": {"torch": torch.get_rng_state(),
                           "numpy": np.random.default_rng(0).bit_generator.state}}
    save_checkpoint(tmp_path / "ck", model, ema_weights=ema, train_state=train_state)
    loaded, meta = load_checkpoint(tmp_path / "ck")
    assert meta["weights"] == "ema"
    for n, p in model.named_parameters():
        assert torch.equal(loaded.state_dict()[n], p.detach() + 1)
    assert torch.equal(loaded.puzzle_emb.weights, model.puzzle_emb.weights)  # live table, as upstream
    ts = load_train_state(tmp_path / "ck")
    assert ts["step"] == 3 and torch.equal(ts["model"]["lm_head.weight"], model.lm_head.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "x", model, meta={"files": {}})


def test_corrupt_or_truncated_checkpoints_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "ck", make_model(), train_state={"step": 1})
    good = tmp_path / "good"
    shutil.copytree(path, good)
    f = path / "model.pt"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, one bit flipped
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)
    (good / "train_state.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError):
        load_train_state(good)
    (good / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="meta.json"):
        load_checkpoint(good)


def test_puzzle_table_mismatch_and_mean_reset(tmp_path):
    model = make_model(rows=7)
    ds = make_dataset(tmp_path / "a", rows=7)
    path = save_checkpoint(tmp_path / "ck", model, dataset_dir=ds)
    with pytest.raises(ValueError, match=r"7 puzzle ids.*needs 9 ids.*reset_puzzle_emb='mean'"):
        load_checkpoint(path, num_puzzle_identifiers=9)
    other = make_dataset(tmp_path / "b", rows=7, tag="b")  # same size, different id map
    with pytest.raises(ValueError, match=dataset_fingerprint(ds)):
        load_checkpoint(path, dataset_dir=other)
    loaded, _ = load_checkpoint(path, num_puzzle_identifiers=9, reset_puzzle_emb="mean")
    W, mean = loaded.puzzle_emb.weights, model.puzzle_emb.weights[1:].mean(0)
    assert W.shape == (9, 32) and loaded.config.num_puzzle_identifiers == 9
    assert torch.equal(W[0], torch.zeros(32))  # blank row stays zero
    torch.testing.assert_close(W[1:], mean.expand(8, -1))
    with pytest.raises(ValueError):
        load_checkpoint(path, reset_puzzle_emb="zeros")


def test_slim_export_round_trip(tmp_path):
    model = make_model(rows=50)
    full = save_checkpoint(tmp_path / "ck", model)
    slim = export_slim(full, tmp_path / "slim")
    assert (slim / "model.pt").stat().st_size < (full / "model.pt").stat().st_size
    meta = json.loads((slim / "meta.json").read_text())
    assert meta["kind"] == "slim" and meta["source_puzzle_rows"] == 50
    with pytest.raises(ValueError, match="slim"):
        load_checkpoint(slim)
    a, _ = load_checkpoint(slim, num_puzzle_identifiers=4)
    b, _ = load_checkpoint(full, num_puzzle_identifiers=4, reset_puzzle_emb="mean")
    torch.testing.assert_close(a.puzzle_emb.weights, b.puzzle_emb.weights)
    assert torch.equal(eval_logits(a), eval_logits(b))


def test_key_mapping_round_trip():
    for key in ("_orig_mod.model.inner.L_level.layers.1.self_attn.qkv_proj.weight",
                "_orig_mod.model.inner.embed_tokens.embedding_weight", "_orig_mod.model.inner.H_init",
                "_orig_mod.model.inner.L_level.layers.0.mlp_t.down_proj.weight"):
        assert kit_key_to_upstream(upstream_key_to_kit(key)) == key
    assert (upstream_key_to_kit("model.inner.L_level.layers.0.self_attn.o_proj.weight")
            == "net.blocks.0.attn.o_proj.weight")


YAML = """\
arch:
  H_cycles: {H_cycles}
  H_layers: 0
  L_cycles: {L_cycles}   # n
  L_layers: {L_layers}
  expansion: {expansion}
  forward_dtype: {forward_dtype}
  halt_exploration_prob: {halt_exploration_prob}
  halt_max_steps: {halt_max_steps}
  hidden_size: {hidden_size}
  loss:
    loss_type: stablemax_cross_entropy
    name: losses@ACTLossHead
  mlp_t: false
  name: recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1
  no_ACT_continue: true
  num_heads: {num_heads}
  pos_encodings: {pos_encodings}
  puzzle_emb_len: {puzzle_emb_len}
  puzzle_emb_ndim: {puzzle_emb_ndim}
data_paths:
- data/arc2concept-aug-1000
data_paths_test: []
evaluators:
- name: arc@ARC
  submission_K: 2
lr: 0.0001
run_name: 'pretrain att #1'
"""


def test_upstream_yaml_without_pyyaml_names_the_fix(tmp_path, monkeypatch):
    torch.save({}, tmp_path / "step_0")
    (tmp_path / "all_config.yaml").write_text("arch: {}\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` now raises ImportError
    with pytest.raises(CheckpointError, match="pip install pyyaml"):
        load_checkpoint(tmp_path / "step_0")


def test_upstream_file_with_all_config_yaml(golden, tmp_path):
    d = golden / "model"
    arch = json.loads((d / "config.json").read_text())["arch"]
    up = tmp_path / "run"
    up.mkdir()
    sd = torch.load(d / "step_0")
    torch.save({k.removeprefix("_orig_mod."): v for k, v in sd.items()}, up / "step_0")  # uncompiled keys
    (up / "all_config.yaml").write_text(YAML.format(**arch))
    a, meta = load_checkpoint(up / "step_0")
    b, _ = load_checkpoint(d / "step_0", config=arch)
    assert meta["format"] == "upstream" and a.config == b.config
    assert a.config.num_puzzle_identifiers == arch["num_puzzle_identifiers"]
    assert torch.equal(eval_logits(a, golden_batch(d)), eval_logits(b, golden_batch(d)))
    # an upstream checkpoint carries no fingerprint: only the row count can be checked
    with pytest.raises(ValueError, match="unknown"):
        load_checkpoint(up / "step_0", num_puzzle_identifiers=arch["num_puzzle_identifiers"] + 1)
    # and re-saved in the kit format it round-trips (equal state dicts -> equal outputs)
    c, _ = load_checkpoint(save_checkpoint(tmp_path / "kit", a))
    assert c.config == a.config
    assert all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def golden_batch(d):
    b = np.load(d / "batch.npz")  # first row only: this test is about loading, not numerics
    return {k: torch.from_numpy(b[k][:1]) for k in ("inputs", "labels", "puzzle_identifiers")}


def _upstream(tmp_path, model, name="step_5"):
    """`model` as an upstream run publishes it: a state_dict file and all_config.yaml beside it."""
    import yaml

    tmp_path.mkdir(parents=True, exist_ok=True)
    torch.save({kit_key_to_upstream(k): v for k, v in model.state_dict().items()}, tmp_path / name)
    (tmp_path / "all_config.yaml").write_text(yaml.safe_dump({"arch": model.config.to_upstream()}))
    return tmp_path / name


def _set_yaml(f, **arch):
    import yaml

    y = f.parent / "all_config.yaml"
    data = yaml.safe_load(y.read_text())
    data["arch"].update(arch)
    y.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize("content, words", [
    (b"", ["is empty (0 bytes)", "download it again"]),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 2467988810\n",
     ["Git LFS pointer", "git lfs pull"]),
    (b'{"error": "Repository not found"}', ["not a torch checkpoint", "text starting '{\"error\""]),
    (bytes(range(200, 256)), ["not a torch checkpoint", "binary data starting c8 c9"]),
])
def test_files_that_are_not_checkpoints_say_what_they_are(tmp_path, content, words):
    f = _upstream(tmp_path, make_model())
    f.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(f)
    assert str(f) in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_a_cut_off_file_says_how_much_is_missing(tmp_path):
    f = _upstream(tmp_path, make_model())
    full = f.read_bytes()
    for keep in (len(full) // 3, len(full) - 10):  # cut in the tensors; cut in the zip's end record
        f.write_bytes(full[:keep])
        with pytest.raises(CheckpointError, match=f"is incomplete: {keep:,} bytes") as e:
            load_checkpoint(f)
        need = re.search(r"need at least ([\d,]+) bytes", str(e.value))
        assert need is None or keep < int(need.group(1).replace(",", "")) <= len(full), str(e.value)
    f.write_bytes(full[:10])  # not even its tensor list: the size still told, the figure left out
    with pytest.raises(CheckpointError, match="is incomplete: 10 bytes"):
        load_checkpoint(f)


@pytest.mark.parametrize("field, value, words", [
    ("hidden_size", 64, ["arch.hidden_size is 64", "hidden size 32 (embed_tokens.weight is [12, 32])"]),
    ("L_layers", 3, ["arch.L_layers is 3", "2 block(s)"]),
    ("expansion", 20.0, ["net.blocks.0.mlp.gate_up_proj.weight is [512, 32] in the file",
                         "arch.expansion 20.0",
                        "[1024, 32]"]),
    ("pos_encodings", "learned", ["arch.pos_encodings is 'learned'", "no embed_pos.weight"]),
    ("mlp_t", True, ["arch.mlp_t is True", "attention layers"]),
])
def test_a_config_that_contradicts_the_weights_names_key_and_tensor(tmp_path, field, value, words):
    model = make_model()
    f = _upstream(tmp_path, model)
    _set_yaml(f, **{field: value})
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(f)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'all_config.yaml'} contradicts the weights in {f}: "), msg
    assert all(w in msg for w in words) and "all_config.yaml of the run that saved step_5" in msg, msg
    with pytest.raises(CheckpointError, match="contradicts"):  # the same check without reading the tensors
        check_checkpoint(f)


def test_kit_meta_that_contradicts_its_weights(tmp_path):
    path = save_checkpoint(tmp_path / "ck", make_model())
    meta = json.loads((path / "meta.json").read_text())
    meta["model_config"]["hidden_size"] = 64
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"model_config.hidden_size is 64 but the weights have hidden"):
        load_checkpoint(path)
    meta["model_config"]["num_heads"] = 5
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="holds no valid model_config .hidden_size 64 not divisible"):
        load_checkpoint(path)


def test_legacy_torch_format_and_check_checkpoint(tmp_path):
    """torch's pre-1.6 pickle format still loads; check_checkpoint passes what load_checkpoint loads."""
    model = make_model()
    f = _upstream(tmp_path, model)
    torch.save({kit_key_to_upstream(k): v for k, v in model.state_dict().items()}, f,
               _use_new_zipfile_serialization=False)
    assert check_checkpoint(f)["format"] == "upstream"
    loaded, _ = load_checkpoint(f)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    torch.save({"step": 5, "model": "weights elsewhere"}, f)
    with pytest.raises(CheckpointError, match="not a model state_dict"):
        load_checkpoint(f)
