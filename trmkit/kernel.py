"""The competition kernel on Kaggle: stage it, push it, submit a version, follow the submission.

    python -m trmkit.kernel push   [--competition SLUG] [--accelerator NvidiaL4] [--image-pinning original]
                                   [--dry-run]
    python -m trmkit.kernel submit [--competition SLUG] [--version N] [--wait [--wait-hours 24]]

`push` stages kaggle/'s notebook and a kernel-metadata.json rendered from kaggle/kernel-metadata.json
into build/kaggle/kernel/ (the folder `kaggle kernels push -p` uploads; `make kaggle-sim` runs this
same folder), then pushes it with the real kaggle CLI. The fields a competition rerun depends on
are forced: internet off, the GPU machine (MACHINE_SHAPES), the competition and the kit's three
datasets as sources, the image pinning. `submit` submits a pushed version and proves it by the
`Submission ref: N` that kaggle 2.2.5 prints, then looks that submission up
(`kaggle competitions submission N`) and prints its status; --wait hands the waiting to the CLI's
own `--wait SECONDS` (--wait-hours, default 24: a bare `--wait` stops at 12 h, shorter than a full
rerun plus queueing and scoring), its status lines shown as they come. Scoring that fails exits 1;
a wait that ends before the score is "still scoring", exit STILL_SCORING (75), not a failure.
What Kaggle sends and prints is in docs/kaggle.md ("What the kit relies on").
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from trm.competition import COMPETITION
from trm.errors import cli_main
from trmkit.bundles import (
    BUNDLES,
    KAGGLE_DIR,
    NO_OWNER,
    PLACEHOLDER,
    BundleError,
    NoCredentials,
    common_options,
    git,
    load_pushed,
    refuse_secrets,
    render,
    resolve_owner,
    save_pushed,
    show,
    stop_before_pushing,
)
from trmkit.kaggle_cli import NO_CREDENTIALS, run_cli

NOTEBOOK = KAGGLE_DIR / "trm_arc2_inference_notebook.ipynb"
TEMPLATE = KAGGLE_DIR / "kernel-metadata.json"
DEFAULT_KERNEL = "trm-arc2-inference"
# `machine_shape` values of Kaggle/kaggle-cli's docs/kernels.md (the repository's, not in the 2.2.5
# wheel, whose --accelerator help names NvidiaTeslaT4 = T4 x2), each with what the notebook does
# there: every visible GPU gets a fine-tune process; trm.model.pick_dtype chooses bf16 on compute
# capability >= 8.0 and fp16 with dynamic loss scaling below (the T4 has no bf16 units). The first
# is the default. "4x L4" rests on public notebooks and third-party notes, not Kaggle's code.
# Sources: docs/kaggle.md ("Machines").
MACHINE_SHAPES = {
    "NvidiaL4": "4x L4 in ARC Prize 2026 (24 GB each): 4 processes, bf16",
    "NvidiaTeslaT4": "T4 x2 (16 GB each): 2 processes, fp16 with dynamic loss scaling",
    "NvidiaL4X1": "1x L4 (24 GB): 1 process, bf16",
    "NvidiaTeslaA100": "A100: one process per GPU, bf16",
    "NvidiaH100": "H100: one process per GPU, bf16",
    "NvidiaRtxPro6000": "RTX PRO 6000 (Blackwell): one process per GPU, bf16",
}
# Names Kaggle has retired or keeps for itself, and names the notebook cannot use: refused with the reason.
REFUSED_SHAPES = {
    "NvidiaTeslaT4Highmem": "an internal Kaggle pool (admin-only, kaggle-cli PR #1198), not for users; "
                            "T4 x2 is NvidiaTeslaT4",
    "NvidiaTeslaP100": "retired (the image's CUDA 12.8 torch has no P100 kernels)",
    "TpuV38": "retired, and a TPU machine has no CUDA GPU for the fine-tune",
    "Tpu1VmV38": "retired, and a TPU machine has no CUDA GPU for the fine-tune",
    "TpuV5E8": "a TPU machine has no CUDA GPU for the fine-tune",
    "TpuV6E8": "a TPU machine has no CUDA GPU for the fine-tune",
}
# docker_image_pinning_type (kaggle 2.2.5 accepts these two): "original" keeps every version of the
# kernel slug on the image its first version ran on, so the commit runs and the rerun share one
# image -- and the wheels PROFILE must be that first version's image, not the newest (a new slug
# targets a new image); "latest" moves each new version to the newest image. docs/kaggle.md.
IMAGE_PINNING = ("original", "latest")
SUBMISSION_REF = re.compile(r"(?m)^Submission ref: (\d+)\s*$")
# kaggle 2.2.5 `competitions submit --wait` (_poll_submission): its two ways of exiting 1 after a submit
WAIT_TIMED_OUT = re.compile(r"Timed out after \d+s waiting for submission")
SCORING_FAILED = re.compile(r"Submission \d+ failed to score")
# sysexits' EX_TEMPFAIL: the wait ended, the submission did not (0-4 and 130 are trm.errors')
STILL_SCORING = 75
WAIT_HOURS = 24.0  # a 12 h rerun, plus Kaggle's queueing and the scoring
POLL_SECONDS = 300  # the CLI's --poll-interval cap while waiting (its default, 60, prints 60 lines an hour)
KERNEL_VERSION = re.compile(r"Kernel version (\d+) successfully")


def check_shape(shape: str) -> str:
    """The machine shape, or a one-line UserError naming the valid ones."""
    if shape in MACHINE_SHAPES:
        return shape
    why = REFUSED_SHAPES.get(shape, "not a Kaggle machine shape")
    raise BundleError(f"machine shape {shape!r}: {why}; choose one of {', '.join(MACHINE_SHAPES)} "
                      f"(ACCELERATOR=... / --accelerator)")


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def render_kernel(a, owner: str) -> dict:
    """kernel-metadata.json from the template (placeholders: owner, competition, kernel_slug,
    {wheels,repo,weights}_slug and {wheels,repo,weights}_dataset = owner/slug), with the fields a
    competition rerun depends on forced: id, code_file, internet off, the GPU machine, the image
    pinning, the competition and the kit's datasets as sources."""
    raw_title = json.loads(a.template.read_text()).get("title") or ""
    slug = a.kernel_slug or (slugify(raw_title) if not PLACEHOLDER.search(raw_title) else DEFAULT_KERNEL)
    slugs = {f"{b}_slug": f"{a.slug_prefix}-{b}" for b in BUNDLES}
    ds = {f"{b}_dataset": f"{owner}/{slugs[f'{b}_slug']}" for b in BUNDLES}
    meta = render(a.template, owner=owner, competition=a.competition, kernel_slug=slug, **slugs, **ds)
    title = meta.get("title") or ""
    if len(title) < 5 or slugify(title) != slug:
        raise BundleError(f"{a.template}: title {title!r} must be 5+ characters and slugify to {slug!r}")
    meta.pop("id_no", None)
    meta.pop("accelerator", None)  # ignored by Kaggle: machine_shape is the field
    shape = getattr(a, "accelerator", None) or meta.get("machine_shape") or next(iter(MACHINE_SHAPES))
    pinning = getattr(a, "image_pinning", None) or meta.get("docker_image_pinning_type") or IMAGE_PINNING[0]
    if pinning not in IMAGE_PINNING:
        raise BundleError(f"{a.template}: docker_image_pinning_type {pinning!r}: "
                          f"choose {' or '.join(IMAGE_PINNING)}")
    meta.update(id=f"{owner}/{slug}", code_file=a.notebook.name, enable_internet=False, enable_gpu=True,
                machine_shape=check_shape(shape), docker_image_pinning_type=pinning)
    meta.setdefault("language", "python")
    meta.setdefault("kernel_type", "notebook")
    meta["competition_sources"] = list(dict.fromkeys([*meta.get("competition_sources", []), a.competition]))
    wanted = [ds["wheels_dataset"], ds["repo_dataset"], ds["weights_dataset"]]
    sources = list(dict.fromkeys([*meta.get("dataset_sources", []), *wanted]))
    meta["dataset_sources"] = [s for s in sources if not (a.no_weights and s == ds["weights_dataset"])]
    return meta


def stage_kernel(a, owner: str) -> tuple[Path, dict]:
    """build/kaggle/kernel/: the notebook's bytes as they are, and the rendered kernel-metadata.json."""
    meta = render_kernel(a, owner)
    problems = notebook_problems(a.notebook)
    if problems:
        raise BundleError(f"{show(a.notebook)}: {'; '.join(problems)}")
    dest = a.out / "kernel"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(a.notebook, dest / a.notebook.name)
    (dest / "kernel-metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    refuse_secrets([dest])
    return dest, meta


def notebook_problems(nb: Path) -> list[str]:
    """What would stop Kaggle's papermill before the first cell: a notebook without a kernel name
    or language (papermill runs with no -k / -l there)."""
    from trmkit.notebooks import kernel_problems

    try:
        return kernel_problems(json.loads(nb.read_text()))
    except (OSError, ValueError) as e:
        return [f"not a readable notebook ({e})"]


def cmd_push(a) -> int:
    where, owner = resolve_owner(a)
    dest, meta = stage_kernel(a, owner)
    print(f"kernel {meta['id']}: {a.notebook.name}, datasets {', '.join(meta['dataset_sources'])}, "
          f"competition {a.competition}, {meta['machine_shape']} ({MACHINE_SHAPES[meta['machine_shape']]}), "
          f"image pinning {meta['docker_image_pinning_type']}, internet off\n"
          f"  $ kaggle kernels push -p {show(dest)}")
    stop = stop_before_pushing(a.dry_run, where, owner, "staged")
    if stop is not None:
        return stop
    _, out = run_cli(["kernels", "push", "-p", str(dest)])  # the machine is in the metadata (machine_shape)
    m = KERNEL_VERSION.search(out)
    version = int(m.group(1)) if m else None
    pushed = load_pushed(a.out)
    pushed["kernels"][meta["id"]] = {"version": version, "competition": a.competition}
    save_pushed(a.out, pushed)
    print(f"pushed {meta['id']} version {version}; once its commit run has finished: "
          f"make kaggle-submit COMP={a.competition} VERSION={version}")
    return 0


def cmd_submit(a) -> int:
    where, owner = resolve_owner(a)
    kernels = load_pushed(a.out)["kernels"]
    kernel = a.kernel or (f"{owner}/{a.kernel_slug}" if a.kernel_slug else None)
    if kernel is None:
        mine = [k for k, v in kernels.items() if v.get("competition") == a.competition]
        kernel = mine[-1] if mine else render_kernel(a, owner)["id"]
    version = a.version or kernels.get(kernel, {}).get("version")
    if not version:
        raise BundleError("which kernel version? pass --version N (printed by `make kaggle-kernel`)")
    msg = a.message or f"{kernel} v{version} (kit commit {git('rev-parse', '--short', 'HEAD')})"
    args = ["competitions", "submit", a.competition, "-k", kernel, "-v", str(version), "-f", a.file,
            "-m", msg]
    if a.wait:
        if not a.wait_hours > 0:
            raise BundleError(f"--wait-hours {a.wait_hours:g}: give a positive number of hours "
                              f"(WAIT_HOURS=..., default {WAIT_HOURS:g})")
        args += ["--wait", str(round(a.wait_hours * 3600)), "--poll-interval", str(POLL_SECONDS)]
    if a.dry_run:
        print("$ kaggle " + " ".join(args) + "\ndry run: nothing submitted")
        return 0
    if where is None or owner == NO_OWNER:
        raise NoCredentials(NO_CREDENTIALS)
    rc, out = run_cli(args, check=False)  # with --wait, exit 1 also means "scored with an error" or
    # "still scoring when the wait ended" (WAIT_TIMED_OUT)
    m = SUBMISSION_REF.search(out)
    if m is None:
        raise BundleError(f"`kaggle competitions submit` (exit {rc}) printed no `Submission ref: N`, "
                          "so nothing is "
                          f"known to be submitted; look at `kaggle competitions submissions {a.competition}`")
    ref = m.group(1)
    status = submission_status(ref)
    print(f"submitted {kernel} v{version} to {a.competition}: submission {ref}, {status}")
    if rc and a.wait and WAIT_TIMED_OUT.search(out) and not SCORING_FAILED.search(out):
        print(f"still scoring after {a.wait_hours:g} h of waiting: not a failure; follow it with "
              f"`kaggle competitions submission {ref}` (exit {STILL_SCORING})")
        return STILL_SCORING
    if rc:
        print(f"waiting for the score failed (exit {rc}): see the CLI's lines above")
        return 1
    if not a.wait:
        print(f"the rerun on the hidden tasks takes up to the notebook's 12 h budget; follow it with "
              f"`kaggle competitions submission {ref}` (or submit with WAIT=1)")
    return 0


def submission_status(ref: str) -> str:
    """`kaggle competitions submission REF` (kaggle 2.2.5) as one phrase: its status and scores or
    error; a failed look-up only says so, since the ref already proves the submission."""
    rc, out = run_cli(["competitions", "submission", ref], check=False)
    fields = dict(re.findall(r"(?m)^([A-Z][A-Za-z ]+):[ \t]*(.*)$", out))
    if rc or fields.get("Submission Ref", "").strip() != ref:  # (its "Error:" field is the scoring error)
        return f"status unknown (`kaggle competitions submission {ref}` exit {rc})"
    parts = [f"status {fields.get('Status', '').strip() or 'not given'}"]
    parts += [f"{k.lower()} {fields[k].strip()}" for k in ("Public Score", "Private Score", "Error")
              if fields.get(k, "").strip()]
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    return cli_main(_main, argv)


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = common_options()
    common.add_argument("--competition", default=COMPETITION,
                        help=f"competition slug (default {COMPETITION})")
    common.add_argument("--kernel-slug",
                        help=f"default: slugify(the template's title), else {DEFAULT_KERNEL}")
    common.add_argument("--template", type=Path, default=TEMPLATE)
    common.add_argument("--notebook", type=Path, default=NOTEBOOK)
    common.add_argument("--no-weights", action="store_true", help="do not attach the weights dataset")
    p = sub.add_parser("push", parents=[common], help="stage and push the competition notebook")
    p.add_argument("--accelerator", help="machine_shape, one of: " + "; ".join(
        f"{k} = {v}" for k, v in MACHINE_SHAPES.items()) + f" (default {next(iter(MACHINE_SHAPES))})")
    p.add_argument("--image-pinning", choices=IMAGE_PINNING,
                   help="docker_image_pinning_type (default: the template's, else original)")
    p = sub.add_parser("submit", parents=[common], help="submit a pushed kernel version")
    p.add_argument("--version", type=int, help="kernel version (default: the last push)")
    p.add_argument("--kernel", help="owner/slug (default: the last push for the competition)")
    p.add_argument("--file", default="submission.json", help="the kernel's output file")
    p.add_argument("-m", "--message")
    p.add_argument("--wait", action="store_true",
                   help=f"wait for the score (the CLI's --wait SECONDS); exit {STILL_SCORING} when the wait "
                   "ends first")
    p.add_argument("--wait-hours", type=float, default=WAIT_HOURS,
                   help=f"how long --wait waits (default {WAIT_HOURS:g})")
    a = ap.parse_args(argv)
    a.out = a.out.resolve()
    return {"push": cmd_push, "submit": cmd_submit}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
