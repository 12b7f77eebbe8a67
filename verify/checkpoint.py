"""Signed checkpoints in the C2SP tlog-checkpoint / signed-note text format.

    <origin>\\n<tree size>\\n<base64 root hash>\\n        (the note body)
    \\n
    — <key name> <base64(key id (4 bytes) || Ed25519 signature)>\\n

key id = SHA-256(key name || 0x0A || 0x01 || Ed25519 public key)[:4]; the signature is over the body.
A verifier knows the log's name and public key in advance and accepts only that signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccgw.verify.errors import LogError, MalformedError

CHECKPOINT_BYTES_MAX = 4096
_SIG_PREFIX = "\u2014 "  # em dash and space


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def key_id(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n\x01" + public_raw).digest()[:4]


def sign(cp: Checkpoint, key: Ed25519PrivateKey, name: str) -> str:
    if not cp.origin or "\n" in cp.origin or " " in name or not name:
        raise LogError("origin and key name must be non-empty single tokens")
    body = cp.body()
    kid = key_id(name, key.public_key().public_bytes_raw())
    sig = key.sign(body.encode())
    return f"{body}\n{_SIG_PREFIX}{name} {base64.b64encode(kid + sig).decode()}\n"


def parse(text: str) -> tuple[Checkpoint, str, str]:
    """(checkpoint, signed body, signature block) of a note; MalformedError if it does not parse.
    Nothing is trusted yet: verify() checks the signature."""
    if not isinstance(text, str) or len(text) > CHECKPOINT_BYTES_MAX:
        raise MalformedError("checkpoint is not text or too large")
    body, sep, sigs = text.partition("\n\n")
    if not sep:
        raise MalformedError("checkpoint has no signature block")
    body += "\n"
    lines = body.split("\n")
    if len(lines) < 4:
        raise MalformedError("checkpoint body has fewer than three lines")
    try:
        size = int(lines[1])
        root = base64.b64decode(lines[2], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise MalformedError("checkpoint size or root does not parse") from exc
    if not 0 <= size < 1 << 63 or len(root) != 32 or lines[1] != str(size):
        raise MalformedError("checkpoint size or root out of range")
    return Checkpoint(origin=lines[0], size=size, root=root), body, sigs


def verify(text: str, name: str, public_raw: bytes, origin: str | None = None) -> Checkpoint:
    try:
        cp, body, sigs = parse(text)
    except MalformedError as exc:
        raise LogError(str(exc)) from exc
    if origin is not None and cp.origin != origin:
        raise LogError(f"checkpoint origin {cp.origin[:80]!r} is not {origin!r}")
    want_kid = key_id(name, public_raw)
    key = Ed25519PublicKey.from_public_bytes(public_raw)
    for line in sigs.split("\n"):
        if not line.startswith(_SIG_PREFIX):
            continue
        signer, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            continue
        if signer != name or raw[:4] != want_kid or len(raw) != 68:
            continue
        try:
            key.verify(raw[4:], body.encode())
        except InvalidSignature as exc:
            raise LogError(f"checkpoint signature by {name} does not verify") from exc
        return cp
    raise LogError(f"checkpoint carries no signature by {name}")
