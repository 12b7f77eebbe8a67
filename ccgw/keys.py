"""Operator key files (the gateway's token-signing key): Ed25519, PKCS#8 PEM, mode 0600.
Worker keys never pass through here: they exist only in the enclave's memory."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_keypair(prefix: Path, force: bool = False) -> tuple[Path, Path]:
    """PREFIX.key (0600) and PREFIX.pub; parent folders are created. An existing key is never
    overwritten unless `force` (FileExistsError names it)."""
    key = Ed25519PrivateKey.generate()
    priv = prefix.with_name(prefix.name + ".key")
    pub = prefix.with_name(prefix.name + ".pub")
    for p in (priv, pub):
        if p.exists() and not force:
            raise FileExistsError(errno.EEXIST, "exists (use --force to replace it)", str(p))
    priv.parent.mkdir(parents=True, exist_ok=True)
    if force:
        priv.unlink(missing_ok=True)
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    pub.write_bytes(public_pem(key))
    return priv, pub


def load_private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key
