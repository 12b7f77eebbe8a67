"""Digest of a model's weights directory: what workers bind into evidence and receipts name.

SHA-256 over encode("ccgw/v1/model", [(relative path, SHA-256 of file)] sorted by path) for every
regular file in the directory (hidden files skipped, symlinks refused), bounded in count and size.
`model_dir_manifest` also returns each file's SHA-256, so a loader can parse exactly the bytes
that were digested (enclave/engine/loader.py reads each file once and checks it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ccgw.verify.encoding import field, fields, items
from ccgw.verify.errors import LimitError, MalformedError

MODEL_FILES_MAX = 256
MODEL_BYTES_MAX = 512 * 1024**3
_READ_BYTES = 8 * 1024 * 1024


def file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_READ_BYTES):
            h.update(block)
    return h.digest()


def model_dir_sha256(directory: Path) -> bytes:
    return model_dir_manifest(directory)[0]


def model_dir_manifest(directory: Path) -> tuple[bytes, dict[str, bytes]]:
    """The directory digest and the SHA-256 of each file in it (by relative POSIX path), so a
    loader can check that the bytes it parses later are the bytes that were digested."""
    if not directory.is_dir():
        raise MalformedError(f"model directory {directory} does not exist")
    entries: list[bytes] = []
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink():
            raise MalformedError(f"model directory holds a symlink: {rel}")
        if not path.is_file():
            continue
        total += path.stat().st_size
        if len(entries) >= MODEL_FILES_MAX or total > MODEL_BYTES_MAX:
            raise LimitError("model directory exceeds the file count or size limit")
        files[rel.as_posix()] = file_sha256(path)
        entries.append(fields("file", rel.as_posix().encode(), files[rel.as_posix()]))
    if not entries:
        raise MalformedError(f"model directory {directory} is empty")
    return hashlib.sha256(field(b"ccgw/v1/model") + items(entries)).digest(), files
