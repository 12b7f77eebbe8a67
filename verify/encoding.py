"""Canonical, injective byte encodings for everything that is hashed or bound.

Each field is a 4-byte big-endian length then its bytes; a list is a 4-byte count then its items.
Every structure starts with a domain-separation label, so a digest made for one purpose can never
be presented as a digest for another.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable


def field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def fields(label: str, *parts: bytes) -> bytes:
    """Domain label then each part, length-prefixed."""
    return field(label.encode()) + b"".join(field(p) for p in parts)


def items(values: Iterable[bytes]) -> bytes:
    vals = list(values)
    return struct.pack(">I", len(vals)) + b"".join(field(v) for v in vals)


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)
