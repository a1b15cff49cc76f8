"""Where a checkpoint comes from: one resolver for every place the kit takes one.

    from trm.sources import resolve_checkpoint
    path = resolve_checkpoint("hf://arcprize/trm_arc_prize_verification/arc_v2_public/step_723914")
    model, meta = load_checkpoint(path, ...)                 # trm.checkpoint reads what comes back

    python -m trm.sources SPEC [--config all_config.yaml]    # prints the local path

A SPEC is one of
  - a kit checkpoint directory (meta.json inside; trm.checkpoint.save_checkpoint / export_slim);
  - an upstream `step_N` file (a torch state_dict) with `all_config.yaml` beside it, or a config
    given as `config=` (then pass `config=arch_config(config)` to load_checkpoint as well);
  - `hf://owner/repo/path/in/repo[@revision]`, a Hugging Face model repo: a file is fetched with
    hf_hub_download (plus `all_config.yaml` from the same folder when no config is given), a kit
    directory with snapshot_download. Files land in the Hugging Face cache (HF_HOME / HF_HUB_CACHE)
    and huggingface_hub itself honours HF_TOKEN, HF_HUB_OFFLINE and HF_ENDPOINT (read at import).
    An empty path names a kit checkpoint at the repo's root (what `trmkit/bundles.py hf-publish`
    uploads). Once downloaded, HF_HUB_OFFLINE=1 resolves from the cache.
Run directories are not checkpoints: resuming one is trm.train's business.

Every failure is a trm.checkpoint.CheckpointError with one line saying what, where and how to fix.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from trm.checkpoint import META_FILE, CheckpointError, CheckpointNotFound, check_checkpoint, read_yaml
from trm.errors import UserError, cli_main

HF_SCHEME = "hf://"
UPSTREAM_CONFIG = "all_config.yaml"


def resolve_checkpoint(spec: str | Path, config: str | Path | None = None) -> Path:
    """A local path that trm.checkpoint.load_checkpoint reads: a kit directory or an upstream file."""
    if config is not None and not Path(config).is_file():
        raise CheckpointError(f"config {config} not found: give the upstream all_config.yaml "
                              "the checkpoint was trained with")
    if str(spec).startswith(HF_SCHEME):
        return _resolve_hf(str(spec), config)
    return _check_local(Path(spec), config)


def usable_checkpoint(spec: str | Path, config: str | Path | None = None) -> Path:
    """resolve_checkpoint, then trm.checkpoint.check_checkpoint (complete files, a torch file, a config
    that fits the tensors; the tensors' bytes are not read): for tools that refuse an unusable
    checkpoint, as one CheckpointError line, before they start any work."""
    path = resolve_checkpoint(spec, config)
    check_checkpoint(path, config=arch_config(config) if config is not None else None)
    return path


def arch_config(config: str | Path) -> dict:
    """The `arch:` mapping of an upstream all_config.yaml (or the file's mapping if it has none)."""
    data = read_yaml(Path(config))
    if not isinstance(data, dict):
        raise CheckpointError(f"{config} is not a YAML mapping: give upstream's all_config.yaml")
    return data.get("arch", data)


def _check_local(path: Path, config) -> Path:
    if path.is_dir():
        if (path / META_FILE).is_file():
            return path
        steps = sorted(p.name for p in path.glob("step_*"))
        hint = (f"name one of its upstream files ({', '.join(steps[:3])})" if steps else
                "give a checkpoint directory (meta.json inside) or an upstream step_N file; "
                "a run directory is resumed with trm.train, not loaded")
        raise CheckpointError(f"{path} is a directory without {META_FILE}, so not a kit checkpoint: {hint}")
    if path.is_file():
        if config is not None or (path.parent / UPSTREAM_CONFIG).is_file():
            return path
        if (path.parent / META_FILE).is_file():
            raise CheckpointError(f"{path} is a file inside the kit checkpoint {path.parent}: "
                                  "give the directory")
        raise CheckpointError(f"{path} has no {UPSTREAM_CONFIG} beside it: put the upstream run's "
                              f"{UPSTREAM_CONFIG} next to it or pass its config explicitly")
    raise CheckpointNotFound(f"checkpoint {path} not found: give a kit checkpoint directory, an upstream "
                             "step_N file or hf://owner/repo/path[@revision]")


def parse_hf(spec: str) -> tuple[str, str, str]:
    """'hf://owner/repo/a/b@rev' -> ('owner/repo', 'a/b', 'rev'); the revision defaults to 'main'."""
    body, at, revision = spec.removeprefix(HF_SCHEME).rpartition("@")
    if not at:
        body, revision = revision, "main"
    parts = body.strip("/").split("/")
    if len(parts) < 2 or not all(parts) or not revision:
        raise CheckpointError(f"bad checkpoint spec {spec!r}: expected hf://owner/repo/path/in/repo[@revision]")
    return f"{parts[0]}/{parts[1]}", "/".join(parts[2:]), revision


def _resolve_hf(spec: str, config) -> Path:
    repo_id, path, revision = parse_hf(spec)
    try:
        import huggingface_hub as hub
        from huggingface_hub import errors
    except ImportError:
        raise CheckpointError(f"{spec} is on Hugging Face, but huggingface_hub is not installed: "
                              "pip install huggingface_hub") from None
    where = f"{repo_id} at revision {revision}"
    _quiet_no_exist()
    no_cache = []  # files that could not be fetched and are not cached (offline, or no network)

    def fetch(filename: str) -> Path | None:
        """The cached file, or None if the repo has no such file or it can be neither fetched nor
        found cached.

        After one network failure only the cache is looked at: the client retries each file for ~25 s."""
        try:
            local = Path(hub.hf_hub_download(repo_id, filename, revision=revision,
                                             local_files_only=bool(no_cache)))
        except errors.RemoteEntryNotFoundError:
            return None
        except errors.LocalEntryNotFoundError:
            no_cache.append(filename)
            return None
        return local if local.is_file() else None  # offline, a cached folder's name comes back as is

    def offline_error() -> CheckpointError:
        why = ("HF_HUB_OFFLINE is set" if hub.constants.HF_HUB_OFFLINE
               else f"{hub.constants.ENDPOINT} cannot be reached")
        return CheckpointError(f"cannot fetch {spec}: no network ({why}) and not in the Hugging Face cache; "
                               "run once online or set HF_HUB_OFFLINE=0")

    try:
        # the file first: when the Hub can't be reached, a cached file comes back at once, while each
        # file that is not cached costs the client's retries (~25 s)
        local = fetch(path) if path else None
        if local is not None:  # an upstream step_N file
            config_file = _join(_parent(path), UPSTREAM_CONFIG)
            if config is None and fetch(config_file) is None:
                if no_cache:
                    raise offline_error()
                if fetch(_join(_parent(path), META_FILE)) is not None:
                    raise CheckpointError(f"{path} is a file inside the kit checkpoint "
                                          f"{_parent(path) or '/'} of "
                                          f"{where}: name the folder (hf://{repo_id}/{_parent(path)})")
                raise CheckpointError(f"no {config_file} beside {path} in {where}: upload the run's "
                                      f"{UPSTREAM_CONFIG} next to it or pass its config explicitly")
            return local
        if fetch(_join(path, META_FILE)) is not None:  # else a kit checkpoint directory
            root = hub.snapshot_download(repo_id, revision=revision, local_files_only=bool(no_cache),
                                         allow_patterns=[_join(path, "*")] if path else None)
            return Path(root) / path
        if no_cache:
            raise offline_error()
        raise CheckpointError(f"no file {path or META_FILE} in {where}"
                              + (f" (nor a kit checkpoint {_join(path, META_FILE)})" if path else "")
                              + ": check the path and revision on the repo's Files page")
    except errors.RevisionNotFoundError:
        raise CheckpointError(f"no revision {revision} in {repo_id}: "
                              "give a branch, tag or commit that exists") from None
    except errors.HfHubHTTPError as e:
        raise _http_error(e, hub, repo_id, spec) from None
    except errors.LocalEntryNotFoundError:  # snapshot_download, offline with an incomplete cache
        raise offline_error() from None


def _http_error(e, hub, repo_id: str, spec: str) -> CheckpointError:
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status in (401, 403) or isinstance(e, hub.errors.RepositoryNotFoundError):
        fix = ("check owner/name, and that your token (HF_TOKEN) can read it (gated repos: request access)"
               if hub.get_token() else "if it is private or gated, set HF_TOKEN (or run `hf auth login`)")
        return CheckpointError(f"cannot read {repo_id} (HTTP {status}: not found, private or gated): {fix}")
    return CheckpointError(f"cannot fetch {spec}: HTTP {status} from {hub.constants.ENDPOINT}; "
                           "try again later")


def _quiet_no_exist() -> None:
    """Probing `X/meta.json` after a 404 on `X` makes the client log that it cannot record the second
    404 in its cache (X is already recorded as a file): harmless, and our own error follows."""
    log = logging.getLogger("huggingface_hub.file_download")
    if not any(isinstance(f, _NoExistNoise) for f in log.filters):
        log.addFilter(_NoExistNoise())


class _NoExistNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Could not cache non-existence of file")


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m trm.sources", description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", help="kit checkpoint dir, upstream step_N file, or hf://owner/repo/path[@revision]")
    ap.add_argument("--config", help="upstream all_config.yaml, when it is not beside the step_N file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Print the local path a checkpoint spec resolves to; errors through trm.errors.cli_main."""
    def run(args: list[str]) -> int:
        a = parser().parse_args(args)
        try:
            print(resolve_checkpoint(a.spec, a.config))
        except CheckpointError as e:  # a spec that resolves to nothing usable is a wrong input here: exit 2
            raise UserError(str(e)) from None
        return 0

    return cli_main(run, argv)


if __name__ == "__main__":
    sys.exit(main())
