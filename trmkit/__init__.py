"""The kit's tooling, apart from the runtime package `trm` (installed with the `kit` extra; never
shipped to Kaggle): notebook runner and display helpers, the demo, Kaggle bundles and publishing,
the local Kaggle simulation, the offline wheelhouse.

    python -m trmkit.notebooks build|train|evaluate|sync   papermill + Jupytext (make train / evaluate)
    python -m trmkit.bundles push|kernel-push|submit|hf-publish
    python -m trmkit.sim                                   the competition notebook offline (make kaggle-sim)
    python -m trmkit.wheelhouse --profile kaggle-2026      offline wheels (make kaggle-wheels)
    python -m trmkit.wheelcheck --profile kaggle-2026      offline install check
"""
