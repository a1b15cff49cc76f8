"""Dataset / kernel push and code-competition submit through the REAL kaggle 2.2.5 CLI, against the
loopback fake in tests/fakes/fake_kaggle.py (no network: the CLI is pointed at 127.0.0.1).

    .venv/bin/python -m pytest -q tests/test_kaggle_push.py

bundles.main() runs in-process with the fake's environment (KAGGLE_API_ENVIRONMENT=LOCALHOST,
HTTP_PROXY at the fake, fake KAGGLE_USERNAME/KAGGLE_KEY, fresh HOME/TMPDIR/KAGGLE_CONFIG_DIR);
it shells out to .venv/bin/kaggle for every Kaggle call; so do kernel.main()'s push and submit.
"""

from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest
from fakes.checkpoints import make_run
from fakes.clock import DAY, shift_clock
from fakes.fake_kaggle import FakeKaggle
from test_bundles import bundles, git, repo, wheelhouse  # noqa: F401  (fixtures)

from trmkit import kernel as kernel_mod

STATUS, CREATE, VERSION = (f"datasets.DatasetApiService/{m}" for m in
                           ("GetDatasetStatus", "CreateDataset", "CreateDatasetVersion"))
SUBMIT, LIMITS, GET = (f"competitions.CompetitionApiService/{m}" for m in
                       ("CreateCodeSubmission", "GetSubmissionLimits", "GetSubmission"))


@pytest.fixture
def fake(tmp_path, monkeypatch):
    with FakeKaggle(username="tester") as f:
        for k in list(os.environ):
            if k.startswith("KAGGLE_") or k.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
                monkeypatch.delenv(k)
        for k, v in f.env(tmp_path / "cli").items():
            if os.environ.get(k) != v:
                monkeypatch.setenv(k, v)
        yield f


def push(tmp_path, src, wh, *args) -> int:
    return bundles.main(["push", "--out", str(tmp_path / "stage"), "--repo-dir", str(src),
                         "--wheels-dir", str(wh), *args])


def uploaded_tree(files: dict[str, bytes]) -> dict[str, bytes]:
    """What a dataset version holds, with each <dir>.zip (--dir-mode zip) opened up to <dir>/<path>."""
    out = {}
    for name, data in files.items():
        if name.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for info in z.infolist():
                    if not info.is_dir():
                        out[f"{name[:-4]}/{info.filename}"] = z.read(info)
        else:
            out[name] = data
    return out


def staged_tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*")
            if p.is_file() and p.name != "dataset-metadata.json"}


def test_create_then_skip_then_version(tmp_path, repo, wheelhouse, fake, capsys):  # noqa: F811
    assert push(tmp_path, repo, wheelhouse) == 0
    # ours decides create-vs-version, then `datasets create` checks again itself
    assert fake.methods().count(STATUS) == 4 and fake.methods().count(CREATE) == 2
    stage = tmp_path / "stage"
    for bundle in ("wheels", "repo"):
        versions = fake.datasets[f"tester/trm-kit-{bundle}"]
        assert len(versions) == 1
        assert uploaded_tree(versions[0]["files"]) == staged_tree(stage / bundle)  # bytes, unzipped
        assert "dataset-metadata.json" not in versions[0]["files"]
    assert "pkg.zip" in fake.datasets["tester/trm-kit-repo"][0]["files"]  # folders travel zipped
    meta = fake.datasets["tester/trm-kit-repo"][0]["meta"]
    assert meta["title"] == "TRM kit source" and meta["licenseName"] == "other" and meta["isPrivate"] is True
    pushed = json.loads((stage / "pushed.json").read_text())["datasets"]
    assert set(pushed) == {"tester/trm-kit-wheels", "tester/trm-kit-repo"}

    n = len(fake.calls)
    assert push(tmp_path, repo, wheelhouse) == 0  # nothing changed: no request at all
    assert len(fake.calls) == n
    assert capsys.readouterr().out.count("unchanged since the last push: skip") == 2

    (repo / "pkg" / "mod.py").write_text("X = 2\n")
    git(repo, "commit", "-qam", "change")
    assert push(tmp_path, repo, wheelhouse) == 0
    assert fake.methods()[n:].count(VERSION) == 1 and CREATE not in fake.methods()[n:]
    v2 = fake.datasets["tester/trm-kit-repo"][1]
    assert uploaded_tree(v2["files"]) == staged_tree(stage / "repo")
    assert uploaded_tree(v2["files"])["pkg/mod.py"] == b"X = 2\n"
    assert git(repo, "rev-parse", "HEAD")[:12] in v2["notes"]
    assert len(fake.datasets["tester/trm-kit-wheels"]) == 1


def test_same_checkpoint_twice_pushes_nothing(tmp_path, repo, wheelhouse, fake, capsys, monkeypatch):  # noqa: F811
    """All three bundles, restaged from scratch a day later by the clock, same checkpoint: no request."""
    ckpt = make_run(tmp_path / "runs" / "x", step=5)
    assert push(tmp_path, repo, wheelhouse, "--checkpoint", str(ckpt)) == 0
    assert fake.methods().count(CREATE) == 3 and len(fake.datasets["tester/trm-kit-weights"]) == 1
    assert (uploaded_tree(fake.datasets["tester/trm-kit-weights"][0]["files"])
            == staged_tree(tmp_path / "stage" / "weights"))
    capsys.readouterr()
    n = len(fake.calls)
    shift_clock(monkeypatch, DAY)  # a staging-time clock in any file would now differ
    assert push(tmp_path, repo, wheelhouse, "--checkpoint", str(ckpt)) == 0
    assert fake.calls[n:] == []
    assert capsys.readouterr().out.count("unchanged since the last push: skip") == 3


def test_existing_dataset_gets_a_version_not_a_create(tmp_path, repo, wheelhouse, fake):  # noqa: F811
    fake.datasets["tester/trm-kit-wheels"] = [{"files": {}, "notes": None, "meta": {}}]
    assert push(tmp_path, repo, wheelhouse, "--bundles", "wheels") == 0
    assert fake.methods().count(VERSION) == 1 and CREATE not in fake.methods()


@pytest.mark.parametrize("method, fault", [(CREATE, "error-body"), (CREATE, "http500"), (STATUS, "http500")])
def test_server_failures_fail_the_push(tmp_path, repo, wheelhouse, fake, capsys, method, fault):  # noqa: F811
    fake.faults[method] = fault
    assert push(tmp_path, repo, wheelhouse, "--bundles", "repo") == 1
    err = capsys.readouterr().err
    assert ("cannot tell whether" if method == STATUS else "`kaggle datasets create` failed") in err
    assert not (tmp_path / "stage" / "pushed.json").exists()  # a failed bundle is not recorded
    if method == STATUS:
        assert CREATE not in fake.methods()  # a 500 is not taken for "does not exist"


# ---------------------------------------------------------------- kernel push + submit

@pytest.fixture
def kernel_files(tmp_path) -> tuple[Path, Path]:
    tpl = tmp_path / "kernel-metadata.json"
    tpl.write_text(json.dumps({
        "id": "${owner}/placeholder", "title": "TRM ARC2 test kernel", "code_file": "x.ipynb",
        "language": "python", "kernel_type": "notebook", "is_private": True, "enable_gpu": True,
        "enable_internet": True, "machine_shape": "NvidiaL4", "dataset_sources": [],
        "competition_sources": []}))
    nb = tmp_path / "trm_test_notebook.ipynb"
    nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": [
        {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": ["print('hi')\n"],
         "outputs": [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}}}))
    return tpl, nb


def kernel(tmp_path, kernel_files, cmd: str, *args) -> int:
    tpl, nb = kernel_files
    return kernel_mod.main([cmd, "--out", str(tmp_path / "stage"), "--competition", "arc-prize-2025",
                            "--template", str(tpl), "--notebook", str(nb), *args])


@pytest.mark.parametrize("message", [None, "any text"], ids=["no-message", "some-message"])
def test_kernel_push_then_submit(tmp_path, kernel_files, fake, capsys, message):
    """The submission is proven by the ref the CLI prints, whatever message the server sends (its
    content for a code submission is not documented), and its status is looked up by that ref."""
    for b in ("wheels", "repo", "weights"):
        fake.datasets[f"tester/trm-kit-{b}"] = [{"files": {}, "notes": None, "meta": {}}]
    fake.submit_message = message
    assert kernel(tmp_path, kernel_files, "push") == 0
    body = fake.kernels["tester/trm-arc2-test-kernel"][0]
    assert body["newTitle"] == "TRM ARC2 test kernel" and body["machineShape"] == "NvidiaL4"
    assert body["dockerImagePinningType"] == "original"  # the rerun keeps the image the commit run checked
    assert body["datasetDataSources"] == ["tester/trm-kit-wheels", "tester/trm-kit-repo",
                                          "tester/trm-kit-weights"]
    assert body["competitionDataSources"] == ["arc-prize-2025"]
    assert body.get("enableInternet", False) is False  # a competition rerun has no internet
    text = json.loads(body["text"])
    assert text["cells"][0]["outputs"] == [] and text["metadata"]["kernelspec"]["name"] == "python3"
    staged = json.loads((tmp_path / "stage" / "kernel" / "kernel-metadata.json").read_text())
    assert staged["enable_internet"] is False and staged["code_file"] == "trm_test_notebook.ipynb"
    assert "make kaggle-submit COMP=arc-prize-2025 VERSION=1" in capsys.readouterr().out

    assert kernel(tmp_path, kernel_files, "submit") == 0  # version: the last push
    out = capsys.readouterr().out
    assert "Submission ref: 1001" in out  # the CLI's own line
    assert ("submitted tester/trm-arc2-test-kernel v1 to arc-prize-2025: "
            "submission 1001, status PENDING") in out
    assert fake.methods()[-3:] == [SUBMIT, LIMITS, GET]  # submit, remaining today, then the look-up
    sub = fake.submissions[-1]
    assert (sub["competitionName"], sub["kernelOwner"], sub["kernelSlug"], sub["kernelVersion"],
            sub["fileName"]) == ("arc-prize-2025", "tester", "trm-arc2-test-kernel", 1, "submission.json")
    assert "v1" in sub["submissionDescription"]
    assert kernel(tmp_path, kernel_files, "submit", "--version", "9") == 1  # unknown version: 404, exit 1
    assert len(fake.submissions) == 1


def test_submit_without_a_ref_fails(tmp_path, kernel_files, fake, capsys):
    """The CLI exits 0 on a 200 that names no submission: that is a failure, in one line."""
    fake.kernels["tester/trm-arc2-test-kernel"] = [{}]
    fake.faults[SUBMIT] = "no-ref"
    assert kernel(tmp_path, kernel_files, "submit", "--version", "1") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "printed no `Submission ref: N`" in err
    assert "kaggle competitions submissions arc-prize-2025" in err
    assert GET not in fake.methods() and fake.submissions == []


@pytest.mark.parametrize("outcome, rc, shown", [
    ({"status": "COMPLETE", "publicScore": "0.0417"}, 0, "status COMPLETE, public score 0.0417"),
    ({"status": "ERROR", "errorDescription": "Notebook Threw Exception"}, 1,
     "status ERROR, error Notebook Threw Exception"),
])
def test_submit_wait_reports_the_outcome(tmp_path, kernel_files, fake, capsys, outcome, rc, shown):
    """WAIT=1: the CLI's own --wait polls GetSubmission until the score or the error."""
    fake.kernels["tester/trm-arc2-test-kernel"] = [{}]
    fake.scoring[1001] = outcome
    assert kernel(tmp_path, kernel_files, "submit", "--version", "1", "--wait") == rc
    out = capsys.readouterr().out
    assert "$ kaggle competitions submit arc-prize-2025 -k tester/trm-arc2-test-kernel -v 1" in out
    assert f"submission 1001, {shown}" in out
    assert fake.methods().count(GET) == 2  # the CLI's poll, then the kit's look-up


# Loaded by the kaggle CLI's own Python only (PYTHONPATH in its environment): time.sleep advances a
# faked clock instead of sleeping, time.time reads it; the faked seconds slept are written at exit.
FAKE_CLOCK = """
import atexit, os, time
_slept, _real_time = [0.0], time.time
def _sleep(seconds):
    _slept[0] += seconds
time.sleep, time.time = _sleep, lambda: _real_time() + _slept[0]
atexit.register(lambda: open(os.environ["FAKE_CLOCK_LOG"], "a").write(f"{_slept[0]}\\n"))
"""


@pytest.fixture
def fake_clock(tmp_path, monkeypatch):
    """The CLI subprocesses run on a faked clock; returns a reader of each one's faked seconds."""
    d = tmp_path / "fake-clock"
    d.mkdir()
    (d / "sitecustomize.py").write_text(FAKE_CLOCK)
    monkeypatch.setenv("PYTHONPATH", str(d))
    monkeypatch.setenv("FAKE_CLOCK_LOG", str(d / "slept.txt"))
    return lambda: [float(x) for x in (d / "slept.txt").read_text().split()]


def test_submit_wait_outlasts_the_clis_12_hours(tmp_path, kernel_files, fake, fake_clock, capsys):
    """A scoring that takes longer than 12 h (faked) is waited for (--wait 86400), not reported as
    a failure; the CLI's status lines come through."""
    fake.kernels["tester/trm-arc2-test-kernel"] = [{}]
    fake.scoring[1001] = {"status": "COMPLETE", "publicScore": "0.0417"}
    fake.pending_polls[1001] = 13 * 3600 // kernel_mod.POLL_SECONDS  # 13 h at the poll cap, and more
    assert kernel(tmp_path, kernel_files, "submit", "--version", "1", "--wait") == 0
    out = capsys.readouterr().out
    assert f"--wait {round(kernel_mod.WAIT_HOURS * 3600)} --poll-interval {kernel_mod.POLL_SECONDS}" in out
    assert "Submission status: PENDING..." in out and "Submission scored. Public score: 0.0417" in out
    assert "submission 1001, status COMPLETE, public score 0.0417" in out
    assert fake_clock()[0] > 12 * 3600  # the CLI's own (faked) wait passed its bare --wait cap


def test_submit_wait_that_ends_first_says_still_scoring(tmp_path, kernel_files, fake, fake_clock, capsys):
    """The CLI's own timeout is not a failure: "still scoring", exit STILL_SCORING (not 1)."""
    fake.kernels["tester/trm-arc2-test-kernel"] = [{}]
    fake.pending_polls[1001] = 10 ** 6  # scoring never ends within the wait
    rc = kernel(tmp_path, kernel_files, "submit", "--version", "1", "--wait", "--wait-hours", "2")
    out = capsys.readouterr().out
    assert rc == kernel_mod.STILL_SCORING != 1
    assert "Timed out after 7200s waiting for submission 1001" in out  # the CLI's line, shown
    assert "still scoring after 2 h of waiting: not a failure" in out and "failed" not in out.lower()
    assert 2 * 3600 < fake_clock()[0] < 2 * 3600 + 2 * kernel_mod.POLL_SECONDS


def test_submit_stands_when_the_lookup_fails(tmp_path, kernel_files, fake, capsys):
    """A submission proven by its ref stands when the status look-up fails; the status says unknown."""
    fake.kernels["tester/trm-arc2-test-kernel"] = [{}]
    fake.faults[GET] = "http500"
    assert kernel(tmp_path, kernel_files, "submit", "--version", "1") == 0
    out = capsys.readouterr().out
    assert "submission 1001, status unknown (`kaggle competitions submission 1001` exit 1)" in out
    assert len(fake.submissions) == 1


@pytest.mark.parametrize("missing, fault", [(True, None), (False, "error-body")])
def test_kernel_push_failures(tmp_path, kernel_files, fake, capsys, missing, fault):
    if not missing:
        for b in ("wheels", "repo", "weights"):
            fake.datasets[f"tester/trm-kit-{b}"] = [{"files": {}, "notes": None, "meta": {}}]
    if fault:
        fake.faults["kernels.KernelsApiService/SaveKernel"] = fault
    assert kernel(tmp_path, kernel_files, "push") == 1  # exit 0 from the CLI, error printed
    assert "`kaggle kernels push` failed" in capsys.readouterr().err


def test_dry_runs_send_nothing(tmp_path, repo, wheelhouse, kernel_files, fake, capsys):  # noqa: F811
    assert push(tmp_path, repo, wheelhouse, "--dry-run") == 0
    assert kernel(tmp_path, kernel_files, "push", "--dry-run") == 0
    assert kernel(tmp_path, kernel_files, "submit", "--version", "3", "--dry-run") == 0
    assert fake.calls == []
    out = capsys.readouterr().out
    assert ("kaggle competitions submit arc-prize-2025 -k tester/trm-arc2-test-kernel "
            "-v 3 -f submission.json") in out
    assert os.environ["KAGGLE_KEY"] not in out


def test_cli_lines_are_shown_as_they_come(tmp_path, monkeypatch):
    """run_cli echoes each line while the CLI still runs (a --wait prints for hours): the stand-in
    CLI prints a line, then goes on only once the kit has echoed it (a file the echo creates)."""
    from trmkit import kaggle_cli

    seen = tmp_path / "echoed"
    exe = tmp_path / "kaggle"
    exe.write_text(f"#!{sys.executable}\n"
                   "import pathlib, sys, time\n"
                   "print('Submission status: PENDING...')\n"  # no flush: PYTHONUNBUFFERED must do it
                   f"seen, end = pathlib.Path({str(seen)!r}), time.monotonic() + 60\n"
                   "while not seen.exists() and time.monotonic() < end:\n"
                   "    time.sleep(0.01)\n"
                   "print('echo seen' if seen.exists() else 'never echoed')\n"
                   "sys.exit(0 if seen.exists() else 3)\n")
    exe.chmod(0o755)
    monkeypatch.setattr(kaggle_cli, "kaggle_exe", lambda: str(exe))
    echoed = []

    def echo(*args, **kw):
        echoed.append(" ".join(map(str, args)))
        if "PENDING" in echoed[-1]:
            seen.touch()

    monkeypatch.setattr(kaggle_cli, "print", echo, raising=False)
    rc, out = kaggle_cli.run_cli(["competitions", "submit"], check=False)
    assert rc == 0 and out.splitlines() == ["Submission status: PENDING...", "echo seen"]
    assert echoed == ["$ kaggle competitions submit", "  Submission status: PENDING...", "  echo seen"]
