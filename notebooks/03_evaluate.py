# %% [markdown]
# # 03 · Evaluate a checkpoint
#
# Predicts every augmented test row, maps the predictions back, votes, and writes
# `submission.json` (always valid), `metrics.json`, `per_task.csv` and task pictures. The
# parameters are the options of `python -m trm.evaluate`. Solve rates come first: pass@K is
# upstream's per-task average, the Kaggle score the official micro average; token accuracy
# counts cells and is **not** a solve rate.
#
#     python -m trmkit.notebooks evaluate --checkpoint runs/NAME --data DATA   # runs this notebook

# %%
from trmkit.show import (
    check_submission,
    eval_output_dir,
    metrics_table,
    run_evaluation,
    show_pictures,
    show_solved,
)

# %% tags=["parameters"]
checkpoint = "runs/run"  # a checkpoint dir, or a run dir (its newest checkpoint)
data = "data/arc2concept-aug-1000"  # built dataset: its test split is evaluated
output_dir = None  # None: <run dir>/evaluate/<step_N>
batch_size = 256
device = "auto"
early_exit = False
pictures = 6
challenges = None  # a challenges JSON the submission must cover (None: the dataset's test tasks)
solutions = None  # its solutions JSON (None: the dataset's test outputs, when known)

# %%
output_dir = eval_output_dir(checkpoint, output_dir)
metrics = run_evaluation(checkpoint, data, output_dir, batch_size=batch_size, device=device,
                         early_exit=early_exit, pictures=pictures, challenges=challenges, solutions=solutions)
metrics_table(metrics)

# %%
show_solved(output_dir)

# %%
show_pictures(output_dir, n=4)

# %%
check_submission(output_dir, data, challenges)
