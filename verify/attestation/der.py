"""A minimal, bounded DER reader for the vendor-specific X.509 extensions that `cryptography` leaves
opaque: AMD's VCEK TCB/hwID values, Intel's SGX extension (PPID, FMSPC, TCB), the TCG DICE FWID
in NVIDIA's attestation leaf.

Only definite lengths, at most 4 length bytes, nesting bounded; anything else is MalformedError.
It reads, it does not validate schemas: callers check the tags they expect.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ccgw.verify.errors import MalformedError

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_IA5_STRING = 0x16
TAG_SEQUENCE = 0x30
NESTING_MAX = 16


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes


def read_tlv(data: bytes, offset: int, what: str) -> tuple[Tlv, int]:
    """One TLV at `offset`; returns it and the offset just past it."""
    if offset + 2 > len(data):
        raise MalformedError(f"{what}: DER truncated")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise MalformedError(f"{what}: multi-byte DER tags are not supported")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise MalformedError(f"{what}: bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise MalformedError(f"{what}: DER value runs past its container")
    return Tlv(tag, data[pos : pos + length]), pos + length


def read_one(data: bytes, what: str) -> Tlv:
    """Exactly one TLV filling `data`."""
    tlv, end = read_tlv(data, 0, what)
    if end != len(data):
        raise MalformedError(f"{what}: trailing bytes after DER value")
    return tlv


def children(value: bytes, what: str) -> Iterator[Tlv]:
    off = 0
    while off < len(value):
        tlv, off = read_tlv(value, off, what)
        yield tlv


def integer(tlv: Tlv, what: str) -> int:
    if tlv.tag != TAG_INTEGER or not tlv.value or len(tlv.value) > 16:
        raise MalformedError(f"{what}: expected a DER INTEGER")
    return int.from_bytes(tlv.value, "big", signed=True)


def oid_bytes(dotted: str) -> bytes:
    """DER content octets of an OBJECT IDENTIFIER (for comparisons)."""
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def walk(tlv: Tlv, depth: int = 0) -> Iterator[Tlv]:
    """Depth-first over every TLV inside constructed values (bounded nesting)."""
    if depth > NESTING_MAX:
        raise MalformedError("DER nesting too deep")
    yield tlv
    if tlv.tag & 0x20:  # constructed
        for child in children(tlv.value, "DER"):
            yield from walk(child, depth + 1)
