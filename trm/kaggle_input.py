"""What Kaggle mounts under /kaggle/input, found: the competition files and the kit's datasets.

The layouts differ by year (classic `/kaggle/input/<slug>/`, 2026 `/kaggle/input/competitions/<slug>/`
and `/kaggle/input/datasets/<owner>/<slug>/`), and whether an uploaded archive is extracted is not
documented (docs/kaggle.md, "What the kit relies on"), so everything is found by its files, at any
depth, extracted or archived. Standard library only: the notebook's first cell uses it before any
wheel is installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TEST_CHALLENGES = "arc-agi_test_challenges.json"
EVAL_CHALLENGES = "arc-agi_evaluation_challenges.json"
EVAL_SOLUTIONS = "arc-agi_evaluation_solutions.json"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# A bundle is the first folder (shallowest) holding all of its marker files. The weights markers are
# trm.checkpoint's META_FILE / MODEL_FILE (not imported: that module needs torch).
BUNDLE_MARKERS = {
    "wheels": ("MANIFEST.json", "requirements.txt"),
    "weights": ("meta.json", "model.pt"),
}


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def _walk_dirs(root: Path, max_depth: int = 8):
    """Every directory under root (root included), shallowest first, symlinks followed."""
    level = [root]
    for _ in range(max_depth + 1):
        nxt = []
        for d in level:
            yield d
            try:
                nxt += sorted(p for p in d.iterdir() if p.is_dir())
            except OSError:
                continue
        level = nxt


def _has(d: Path, markers) -> bool:
    return all((d / m).is_file() for m in markers)


def _archives(root: Path) -> list[Path]:
    out = []
    for d in _walk_dirs(root):
        try:
            out += sorted(f for f in d.iterdir() if f.is_file() and f.name.endswith(ARCHIVE_SUFFIXES))
        except OSError:
            continue
    return out


def _archive_members(path: Path) -> list[str]:
    import tarfile
    import zipfile

    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                return z.namelist()
        with tarfile.open(path) as t:
            return t.getnames()
    except (OSError, zipfile.BadZipFile, tarfile.TarError):
        return []


def unpack(archive: Path, dest: Path) -> Path:
    """Extract once into dest/<archive name> (reused when already there); zips, wheels, tars."""
    import zipfile

    out = dest / archive.name.replace(".", "_")
    if not (out / ".unpacked").is_file():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        if archive.name.endswith((".zip", ".whl")):  # by name: a tar holding a torch file
            with zipfile.ZipFile(archive) as z:  # (itself a zip) passes zipfile.is_zipfile
                z.extractall(out)
        else:
            shutil.unpack_archive(str(archive), str(out), filter="data")
        (out / ".unpacked").write_text(str(archive))
    return out


def find_bundle(root: str | Path, kind: str, unpack_to: str | Path) -> Path | None:
    """The shallowest folder under root holding the `kind` bundle's markers (BUNDLE_MARKERS), else
    the same inside an archive Kaggle left unextracted (.zip/.tar*, unpacked into unpack_to)."""
    markers = BUNDLE_MARKERS[kind]
    root = Path(root)
    for d in _walk_dirs(root):
        if _has(d, markers):
            return d
    for a in _archives(root):
        if any(m.rstrip("/").endswith(markers[0]) for m in _archive_members(a)):
            for d in _walk_dirs(unpack(a, Path(unpack_to))):
                if _has(d, markers):
                    return d
    return None


def find_weights(root: Path, unpack_to: Path) -> Path | None:
    """The weights to fine-tune: the kit's weights bundle (find_bundle), else an upstream checkpoint
    as published -- a `step_N` file with all_config.yaml beside it (e.g. NVARC's Kaggle dataset
    attached as is; the newest step when there are several). Its new puzzle rows are
    mean-initialised from that file's own table."""
    if Path(root).is_file():  # weights_dir names a step_N file: that one, never another
        return Path(root)
    found = find_bundle(root, "weights", unpack_to)
    if found is not None:
        return found
    for d in _walk_dirs(Path(root)):
        if (d / "all_config.yaml").is_file():
            steps = [f for f in d.glob("step_*") if f.is_file() and f.name[5:].isdigit()]
            if steps:
                return max(steps, key=lambda f: int(f.name[5:]))
    return None


def find_competition_dir(root: str | Path) -> Path:
    """The folder with arc-agi_test_challenges.json: /kaggle/input/<slug>/ (classic) or
    /kaggle/input/competitions/<slug>/ (2026), or wherever it is; a folder that also has the
    evaluation files (the real competition) wins over a stray copy, then the shallowest."""
    root = Path(root)
    found = [d for d in _walk_dirs(root) if (d / TEST_CHALLENGES).is_file()]
    if not found:
        listing = sorted(str(p.relative_to(root)) for p in root.glob("*/*"))[:30] if root.is_dir() else []
        raise FileNotFoundError(f"no {TEST_CHALLENGES} under {root} (attach the competition data); "
                                f"found: {listing}")
    return sorted(found, key=lambda d: (not (d / EVAL_CHALLENGES).is_file(), len(d.parts)))[0]


def public_files(comp_dir: Path) -> list[Path]:
    """The attached files whose task ids are public: every *_solutions.json, then every
    *_challenges.json but the test file (training, evaluation), each group by name."""
    comp_dir = Path(comp_dir)
    return [*sorted(comp_dir.glob("*_solutions.json")),
            *sorted(f for f in comp_dir.glob("*_challenges.json") if f.name != TEST_CHALLENGES)]


def id_sources(comp_dir: Path, challenges: dict) -> dict[str, str | None]:
    """{test id: the first public file (public_files) that holds it, or None}. The hidden set's ids
    are in none of them; the public placeholder's are all in one (its solutions when attached,
    else its challenges). Never a hash check: the test file is read as it is."""
    found: dict[str, str | None] = dict.fromkeys(challenges)
    for f in public_files(comp_dir):
        ids = set(read_json(f))
        for t in found:
            if found[t] is None and t in ids:
                found[t] = f.name
    return found


def all_known(sources: dict[str, str | None]) -> bool:
    """Every test id is in a public file (id_sources); an empty test file is not the placeholder."""
    return bool(sources) and None not in sources.values()


def known_by(sources: dict[str, str | None]) -> dict[str | None, int]:
    """{file name: how many test ids it knew first} (id_sources), the unknown ids under None."""
    counts: dict[str | None, int] = {}
    for f in sources.values():
        counts[f] = counts.get(f, 0) + 1
    return counts


def is_placeholder(comp_dir: Path, challenges: dict) -> bool:
    """Whether the test file is the public placeholder: every id is in an attached public file."""
    return all_known(id_sources(comp_dir, challenges))
