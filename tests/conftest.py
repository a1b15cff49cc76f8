"""Shared test fixtures: where the golden data and the ARC JSON live.

TRM_SHARED_DIR (default ../shared beside the repo) holds spec/, golden/ and data/;
TRM_GOLDEN_DIR (default $TRM_SHARED_DIR/golden) can point the golden tests at another
golden set of identical structure. Tests that need them skip with a reason when absent.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    return Path(os.environ.get("TRM_SHARED_DIR", REPO.parent / "shared")).resolve()


def golden_dir() -> Path:
    return Path(os.environ.get("TRM_GOLDEN_DIR", shared_dir() / "golden")).resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def golden() -> Path:
    g = golden_dir()
    if not g.is_dir():
        pytest.skip(f"golden data not found at {g} (set TRM_GOLDEN_DIR or TRM_SHARED_DIR)")
    return g


@dataclass(frozen=True)
class GoldenBuild:
    """arc_build/build_command.json: the upstream builder's command line, run in the golden folder.

    Tests read sizes, seed and names from here (and from the built dataset.json files), never
    from the public set, so they pass against any golden set of the same structure."""

    root: Path
    argv: list[str]  # the arguments after `python -m dataset.build_arc_dataset`
    recorded_seed: int | None

    @classmethod
    def load(cls, golden: Path) -> GoldenBuild:
        info = json.loads((golden / "arc_build" / "build_command.json").read_text())
        argv = shlex.split(info["command"])
        return cls(golden, argv[argv.index("-m") + 2:], info.get("seed"))

    def values(self, flag: str) -> list[str]:
        if flag not in self.argv:
            return []
        rest = self.argv[self.argv.index(flag) + 1:]
        return rest[: next((i for i, a in enumerate(rest) if a.startswith("--")), len(rest))]

    def value(self, flag: str) -> str | None:
        v = self.values(flag)
        return v[0] if v else None

    @property
    def seed(self) -> int:  # on the command line, else as recorded, else upstream's default
        s = self.value("--seed")
        return int(s if s is not None else self.recorded_seed if self.recorded_seed is not None else 42)

    @property
    def num_aug(self) -> int:
        return int(self.value("--num-aug"))

    @property
    def subsets(self) -> list[str]:
        return self.values("--subsets")

    @property
    def test_set(self) -> str:
        return self.value("--test-set-name")

    @property
    def output(self) -> Path:
        return self.root / self.value("--output-dir")

    def input_file(self, subset: str, kind: str = "challenges") -> Path:
        return self.root / f"{self.value('--input-file-prefix')}_{subset}_{kind}.json"

    def command(self, output_dir: Path) -> list[str]:
        """The same build for the kit's `python -m dataset_builder`, into output_dir, seed explicit."""
        argv = list(self.argv)
        argv[argv.index("--output-dir") + 1] = str(output_dir)
        return argv if "--seed" in argv else argv + ["--seed", str(self.seed)]


@pytest.fixture(scope="session")
def golden_build(golden) -> GoldenBuild:
    return GoldenBuild.load(golden)


@pytest.fixture(scope="session")
def arc_data() -> Path:
    d = shared_dir() / "data"
    if not d.is_dir():
        pytest.skip(f"ARC JSON not found at {d} (set TRM_SHARED_DIR)")
    return d


@pytest.fixture(scope="session")
def unseen_pretrained(tmp_path_factory) -> Path:
    """The smoke preset pretrained on trmkit.unseen's pretraining tasks, exported slim as a Kaggle
    weights bundle is: ONE pretraining per session for tests/test_unseen.py's unseen-task and
    transfer checks (a few minutes on CPU; `make demo` runs the same code)."""
    from trmkit import unseen

    return unseen.pretrain(tmp_path_factory.mktemp("unseen-pretrain"))


CUDA_DESELECTED = pytest.StashKey[int]()  # how many `cuda` tests this session deselected


# The two longest files (about 11 minutes each on CI's 2 cores, one thread each: the learning test and
# the unseen-task checks, which share one pretraining). `make test` runs files on two workers
# (pytest-xdist, --dist loadfile in pyproject.toml, in collection order): these go first, one to each
# worker, then the other files with a `slow` test, then the rest, so that short files fill the end;
# started last, either long file would end the run alone.
LONGEST_FILES = ("test_unseen.py", "test_learns.py")


def _file_ranks(items) -> dict:
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    return {item.path: (0, LONGEST_FILES.index(item.path.name)) if item.path.name in LONGEST_FILES
            else (1 if item.path in slow else 2, 0) for item in items}


def pytest_collection_modifyitems(config, items):
    """Longest files first (a stable sort: each file's tests keep their order). Then: `cuda`
    tests run where a CUDA device is visible and are deselected (not skipped: TRM_NO_SKIPS fails on
    skips) where none is, so `make test` on a GPU machine runs them and CI's CPU run does not."""
    ranks = _file_ranks(items)
    items.sort(key=lambda item: ranks[item.path])
    cuda_items = [item for item in items if item.get_closest_marker("cuda")]
    if not cuda_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    items[:] = [item for item in items if not item.get_closest_marker("cuda")]
    config.hook.pytest_deselected(items=cuda_items)
    config.stash[CUDA_DESELECTED] = len(cuda_items)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist (`make test`): the workers collect and deselect, the controller prints the
    summary, so each worker's count comes back in its workeroutput (set in pytest_sessionfinish)."""
    n = getattr(node, "workeroutput", {}).get("cuda_deselected", 0)
    node.config.stash[CUDA_DESELECTED] = max(n, node.config.stash.get(CUDA_DESELECTED, 0))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = config.stash.get(CUDA_DESELECTED, 0)
    if n:
        terminalreporter.write_line(f"{n} cuda test(s) deselected: no CUDA device visible")


def pytest_sessionfinish(session, exitstatus):
    """With TRM_NO_SKIPS=1 (set by .ci/run) a skipped test fails the run: in CI every test must
    run (a missing dev package or missing ../shared data would otherwise pass silently). Under
    pytest-xdist the controller sees every worker's reports and decides; a worker only hands its
    deselected count back."""
    if hasattr(session.config, "workeroutput"):  # an xdist worker
        session.config.workeroutput["cuda_deselected"] = session.config.stash.get(CUDA_DESELECTED, 0)
        return
    if not os.environ.get("TRM_NO_SKIPS") or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.ensure_newline()
        reporter.write_line(f"TRM_NO_SKIPS: {len(skipped)} test(s) skipped, which CI does not allow:",
                            red=True)
        for r in skipped:
            reporter.write_line(f"  {r.nodeid}: "
                                f"{r.longrepr[-1] if isinstance(r.longrepr, tuple) else r.longrepr}")
        session.exitstatus = 1
