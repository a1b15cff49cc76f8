"""Training config: presets, kit and upstream-style overrides, errors. Run: pytest tests/test_config.py"""

from __future__ import annotations

import pytest

from trm.config import (
    PRESETS,
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    resolve_config,
    valid_keys,
)
from trm.train import main


def test_paper_presets_match_the_guide():
    c = resolve_config("paper-arc2")
    assert c.data_path == "data/arc2concept-aug-1000"
    a = c.arch
    assert (a.hidden_size, a.n_layers, a.n_outer_cycles, a.n_latent_steps) == (512, 2, 3, 4)
    assert (c.global_batch_size, c.lr, c.puzzle_emb_lr, c.weight_decay, c.puzzle_emb_weight_decay) == (
        768, 1e-4, 1e-2, 0.1, 0.1)
    assert (c.beta1, c.beta2, c.lr_warmup_steps, c.lr_min_ratio) == (0.9, 0.95, 2000, 1.0)
    assert c.ema and c.ema_rate == 0.999 and c.checkpoint_every_eval
    assert (c.epochs, c.eval_interval) == (100000, 10000)
    assert resolve_config("paper-arc1").data_path == "data/arc1concept-aug-1000"
    assert set(PRESETS) >= {"paper-arc2", "paper-arc1", "smoke"}
    assert resolve_config("smoke").arch.forward_dtype == "float32"


def test_guide_command_ports_unchanged():
    # the README's upstream command line, after `pretrain.py`
    args = ['arch=trm', 'data_paths=[data/arc2concept-aug-1000]', 'arch.L_layers=2', 'arch.H_cycles=3',
            'arch.L_cycles=4', '+run_name=my_run', 'ema=True', 'checkpoint_every_eval=True', 'epochs=10000',
            'eval_interval=100', 'global_batch_size=384', 'lr=2e-4', '+load_checkpoint=ckpt/step_5',
            'arch.no_ACT_continue=True', 'arch.loss.loss_type=stablemax_cross_entropy', 'evaluators=[]']
    c = resolve_config(None, args)
    assert c.data_path == "data/arc2concept-aug-1000" and c.run_name == "my_run" and c.ema
    assert (c.arch.n_layers, c.arch.n_outer_cycles, c.arch.n_latent_steps) == (2, 3, 4)
    assert (c.epochs, c.eval_interval, c.global_batch_size, c.lr) == (10000, 100, 384, 2e-4)
    assert c.load_checkpoint == "ckpt/step_5" and c.evaluate is False
    # defaults without a preset are upstream's cfg_pretrain.yaml
    d = TrainConfig()
    assert ((d.ema, d.global_batch_size, d.epochs, d.eval_interval, d.lr_min_ratio)
            == (False, 768, 100000, 10000, 1.0))


def test_kit_overrides_and_types():
    c = resolve_config("smoke", ["--arch.hidden_size", "32", "--grad-accum-steps", "4", "--ema",
                                 "--wandb=false", "--lr", "3e-3", "--epochs", "1e3", "--run_dir", "none",
                                 "preset=smoke"])
    assert c.arch.hidden_size == 32 and c.arch.puzzle_emb_ndim == 32  # tied, as upstream's ${.hidden_size}
    assert c.grad_accum_steps == 4 and c.ema is True and c.wandb is False
    assert c.lr == 3e-3 and c.epochs == 1000 and c.run_dir is None and c.preset == "smoke"
    assert config_from_dict(config_to_dict(c)) == c


@pytest.mark.parametrize("args, msg", [
    (["--no_such_key", "1"], "unknown config key 'no_such_key'"),
    (["arch.H_cyclez=3"], "unknown config key"),
    (["--epochs", "ten"], "cannot read 'ten' as int"),
    (["--ema", "maybe"], "cannot read 'maybe' as bool"),
    (["arch=hrm"], "only the TRM architecture"),
    (['data_paths=[a,b]'], "one dataset only"),
    (["--lr"], "needs a value"),
    (["stray"], "cannot parse argument"),
])
def test_bad_overrides(args, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace("[", r"\[")):
        resolve_config("smoke", args)


def test_unknown_key_exits_2_listing_valid_keys(capsys):
    assert main(["--preset", "smoke", "--hiden_size", "3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'hiden_size'" in err
    assert all(k in err for k in ("global_batch_size", "arch.hidden_size", "grad_accum_steps"))
    assert main(["--preset", "nope"]) == 2
    assert "smoke" in capsys.readouterr().err
    assert "arch.n_latent_steps" in valid_keys()
