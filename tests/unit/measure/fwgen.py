"""Synthetic OVMF/TDVF images for tests: random contents with the GUIDed table, SEV metadata and
TDVF metadata laid out as edk2's reset vector lays them out (see verify/measure/firmware.py)."""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence

from ccgw.verify.measure import firmware as fw

SevItem = tuple[int, int, int]  # gpa, size, type
TdvfItem = tuple[
    int, int, int, int, int, int
]  # data offset, raw size, gpa, memory size, type, attrs

AMDSEV_SECTIONS: list[SevItem] = [
    (0x800000, 0x9000, 1),
    (0x80A000, 0x3000, 1),
    (0x80D000, 0x1000, 2),
    (0x80E000, 0x1000, 3),
    (0x80F000, 0x1000, 0x10),
    (0x810000, 0xF000, 1),
]


def entry(guid: bytes, data: bytes) -> bytes:
    return data + struct.pack("<H", len(data) + 18) + guid


def table(entries: Sequence[bytes]) -> bytes:
    body = b"".join(entries)
    return body + struct.pack("<H", len(body) + 18) + fw.FOOTER_GUID


def sev_metadata(items: Sequence[SevItem]) -> bytes:
    head = b"ASEV" + struct.pack("<III", 16 + 12 * len(items), 1, len(items))
    return head + b"".join(struct.pack("<III", *i) for i in items)


def tdvf_metadata(items: Sequence[TdvfItem]) -> bytes:
    head = b"TDVF" + struct.pack("<III", 16 + 32 * len(items), 1, len(items))
    return head + b"".join(struct.pack("<IIQQII", *i) for i in items)


def build(
    pages: int = 16,
    sev: Sequence[SevItem] | None = AMDSEV_SECTIONS,
    tdvf: Sequence[TdvfItem] | None = None,
    reset_eip: int | None = 0x80B004,
    hashes_gpa: int | None = 0x80F000 + 0xC00,
    seed: int = 1,
    extra: Sequence[bytes] = (),
) -> bytes:
    """An image of `pages` pages; the metadata sits in the last page, below the table."""
    img = bytearray(random.Random(seed).randbytes(pages * fw.PAGE_BYTES))
    n = len(img)
    blobs: list[bytes] = []
    entries: list[bytes] = list(extra)
    cursor = n - 2048  # metadata blobs go here, growing upwards
    for guid, blob in (
        (fw.SEV_METADATA_GUID, sev_metadata(sev) if sev is not None else None),
        (fw.TDX_METADATA_GUID, tdvf_metadata(tdvf) if tdvf is not None else None),
    ):
        if blob is None:
            continue
        img[cursor : cursor + len(blob)] = blob
        entries.append(entry(guid, struct.pack("<I", n - cursor)))
        cursor += len(blob)
        blobs.append(blob)
    if reset_eip is not None:
        entries.append(entry(fw.SEV_ES_RESET_BLOCK_GUID, struct.pack("<I", reset_eip)))
    if hashes_gpa is not None:
        entries.append(entry(fw.SEV_HASH_TABLE_RV_GUID, struct.pack("<II", hashes_gpa, 0x400)))
    t = table(entries)
    end = n - 32
    assert cursor < end - len(t), "metadata and table overlap"
    img[end - len(t) : end] = t
    return bytes(img)
