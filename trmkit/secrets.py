"""The secret scan every bundle passes before it may leave the machine (docs/kaggle.md: a credentials
file once reached a public repo):
key files by name, and token / key / private-key shapes in any file's bytes (zips and tars opened)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path


def files_of(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file())

# Names and contents that must never leave the machine (docs/kaggle.md).
SECRET_NAMES = re.compile(r"(?i)^(kaggle.*\.json|access_token(\.txt)?"
                          r"|\.env(\.(?!example$|sample$|template$)[^/]*)?"
                          r"|id_(rsa|dsa|ecdsa|ed25519)|.*\.pem|\.netrc|\.git-credentials|\.pypirc)$")
SECRET_TEXT = re.compile(
    rb"(?P<private_key>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----)"
    rb"|(?P<kaggle_token>\bKGAT_[A-Za-z0-9]{16,})"
    rb"|(?P<hf_token>\bhf_[A-Za-z0-9]{30,})"
    rb"|(?P<kaggle_key>\"key\"\s*:\s*\"[0-9a-f]{32}\"|KAGGLE_KEY\s*[=:]\s*[\"']?[0-9a-f]{32})"
    rb"|(?P<aws_key_id>\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)"
    rb"|(?P<aws_secret>(?i:aws_secret_access_key)\s*[=:]\s*[\"']?[A-Za-z0-9/+]{40})")

SECRET_LABELS = {"private_key": "a private key", "kaggle_token": "a Kaggle API token",
                 "hf_token": "a Hugging Face token",
                 "kaggle_key": "a Kaggle API key", "aws_key_id": "an AWS access key id",
                 "aws_secret": "an AWS secret key"}


def _scan_bytes(blob_iter, where: str, found: list[str]) -> None:
    tail = b""
    for chunk in blob_iter:
        buf = tail + chunk
        for m in SECRET_TEXT.finditer(buf):
            found.append(f"{where}: looks like {SECRET_LABELS[m.lastgroup]}")
            return
        tail = buf[-512:]  # a token split across two chunks is still seen


def scan_secrets(root: Path, files: list[Path] | None = None) -> list[str]:
    """Every credential-looking file name or content under root (zips and wheels opened too)."""
    found: list[str] = []
    for p in files if files is not None else files_of(root):
        rel = p.relative_to(root).as_posix()
        if SECRET_NAMES.match(p.name):
            found.append(f"{rel}: a credentials file name")
        with open(p, "rb") as f:
            _scan_bytes(iter(lambda: f.read(8 << 20), b""), rel, found)
        if p.suffix in (".zip", ".whl") and zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                for info in z.infolist():
                    inner = f"{rel}!{info.filename}"
                    if SECRET_NAMES.match(Path(info.filename).name):
                        found.append(f"{inner}: a credentials file name")
                    with z.open(info) as f:
                        _scan_bytes(iter(lambda f=f: f.read(8 << 20), b""), inner, found)
    return found
