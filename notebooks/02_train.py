# %% [markdown]
# # 02 · Train a TRM
#
# The parameters are `trm.config.TrainConfig` fields plus the launcher's `n_gpus`. With
# `n_gpus > 1` this notebook launches `torchrun --standalone --nproc-per-node n_gpus -m trm.train`
# and streams its output here; otherwise it trains in this kernel. Any other field goes in
# `overrides`, e.g. `["--epochs", "200"]`, `["arch.L_cycles=4"]`, or `["--resume", "runs/NAME"]`;
# one string is split like a shell line (`papermill -p overrides "--resume runs/NAME"`).
#
#     python -m trmkit.notebooks train --preset paper-arc2 --gpus 8 --run NAME   # runs this notebook

# %%
from trmkit.show import launch_training, show_run

# %% tags=["parameters"]
preset = "smoke"  # smoke | paper-arc2 | paper-arc1 (None with --resume: the run's saved config)
data_path = "data/arc2concept-aug-1000"  # None: the preset's
run_name = None  # run dir $TRM_RUNS_DIR/<run_name> (default runs/<preset>-<UTC time>-<8 hex>)
n_gpus = 1
overrides = []  # trm.train arguments: a list of tokens, or one string

# %%
run_dir = launch_training(preset, overrides, n_gpus=n_gpus, run_name=run_name, data_path=data_path)

# %% [markdown]
# Loss and accuracy curves (`curves.png`, from `metrics.jsonl`), the checkpoints, and the
# provenance written into the run directory.

# %%
show_run(run_dir)
