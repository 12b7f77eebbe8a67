"""OVMF / TDVF firmware images: the GUIDed table at the image's end and the SEV and TDX metadata
it points to (pure parsing; an image is hostile input).

Layout (edk2 OvmfPkg/ResetVector): the image is mapped to end at 4 GiB. 32 bytes before its end
sits the table footer: a u16 total table length and the footer GUID. Walking backwards from the
footer, every entry is `data ‖ u16 length (data + 18) ‖ GUID`. Entries used here:
  SEV-ES reset block    u32 AP reset EIP
  SEV hash table RV     u32 GPA, u32 size of the kernel-hashes table
  SEV metadata          u32 offset from the image end to "ASEV" u32 length, u32 version (1),
                        u32 count, then count × (u32 GPA, u32 size, u32 section type)
  TDX metadata          u32 offset from the image end to "TDVF" u32 length, u32 version (1),
                        u32 count, then count × (u32 data offset, u32 raw size, u64 GPA,
                        u64 memory size, u32 type, u32 attributes)

Every offset, count and size is checked before it is used; a bad field raises MalformedError
naming it, a count or size over verify.limits raises LimitError.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from ccgw.verify import limits
from ccgw.verify.errors import LimitError, MalformedError

PAGE_BYTES = 4096
FOUR_GIB = 1 << 32
_ENTRY_HEADER_BYTES = 18  # u16 length + GUID
_FOOTER_FROM_END_BYTES = 32
_GPA_LIMIT = 1 << 52


def guid_le(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


FOOTER_GUID = guid_le("96b582de-1fb2-45f7-baea-a366c55a082d")
SEV_ES_RESET_BLOCK_GUID = guid_le("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
SEV_HASH_TABLE_RV_GUID = guid_le("7255371f-3a3b-4b04-927b-1da6efa8d454")
SEV_METADATA_GUID = guid_le("dc886566-984a-4798-a75e-5585a7bf67cc")
TDX_METADATA_GUID = guid_le("e47a6535-984a-4798-865e-4685a7bf8ec2")


class SevSectionType(IntEnum):
    SNP_SEC_MEM = 1
    SNP_SECRETS = 2
    CPUID = 3
    SVSM_CAA = 4
    SNP_KERNEL_HASHES = 0x10


class TdvfSectionType(IntEnum):
    BFV = 0
    CFV = 1
    TD_HOB = 2
    TEMP_MEM = 3
    PERM_MEM = 4
    PAYLOAD = 5
    PAYLOAD_PARAM = 6
    TD_INFO = 7


TDVF_ATTR_MR_EXTEND = 0x1
TDVF_ATTR_PAGE_AUG = 0x2


@dataclass(frozen=True)
class SevSection:
    gpa: int
    size: int
    kind: SevSectionType


@dataclass(frozen=True)
class TdvfSection:
    data_offset: int
    raw_size: int
    gpa: int
    memory_size: int
    kind: TdvfSectionType
    attributes: int

    @property
    def extended(self) -> bool:
        return bool(self.attributes & TDVF_ATTR_MR_EXTEND)

    @property
    def page_aug(self) -> bool:
        return bool(self.attributes & TDVF_ATTR_PAGE_AUG)


@dataclass(frozen=True)
class Firmware:
    """A parsed image. `sev_sections`/`tdvf_sections` are empty when the image has no such
    metadata; the accessors that need them say so."""

    image: bytes
    table: Mapping[bytes, bytes]
    sev_sections: tuple[SevSection, ...]
    tdvf_sections: tuple[TdvfSection, ...]

    @property
    def gpa(self) -> int:
        return FOUR_GIB - len(self.image)

    def sev_es_reset_eip(self) -> int:
        return _u32_entry(self.table, SEV_ES_RESET_BLOCK_GUID, "SEV-ES reset block")

    def sev_hashes_table_gpa(self) -> int:
        return _u32_entry(self.table, SEV_HASH_TABLE_RV_GUID, "SEV hash table")

    def has_sev_section(self, kind: SevSectionType) -> bool:
        return any(s.kind == kind for s in self.sev_sections)


def _u32_entry(table: Mapping[bytes, bytes], guid: bytes, what: str) -> int:
    data = table.get(guid)
    if data is None:
        raise MalformedError(f"firmware has no {what} entry in its GUIDed table")
    if len(data) < 4:
        raise MalformedError(f"firmware {what} entry is {len(data)} bytes; needs 4")
    return int.from_bytes(data[:4], "little")


def parse_firmware(image: bytes) -> Firmware:
    if len(image) > limits.FIRMWARE_BYTES_MAX:
        raise LimitError(f"firmware is {len(image)} bytes; limit {limits.FIRMWARE_BYTES_MAX}")
    if not image or len(image) % PAGE_BYTES:
        raise MalformedError(f"firmware size {len(image)} is not a positive multiple of 4096")
    table = _guid_table(image)
    return Firmware(
        image=image,
        table=table,
        sev_sections=_sev_metadata(image, table),
        tdvf_sections=_tdvf_metadata(image, table),
    )


def _guid_table(image: bytes) -> dict[bytes, bytes]:
    footer = len(image) - _FOOTER_FROM_END_BYTES - _ENTRY_HEADER_BYTES
    (total,) = struct.unpack_from("<H", image, footer)
    if image[footer + 2 : footer + _ENTRY_HEADER_BYTES] != FOOTER_GUID:
        return {}  # an image without the table (no SEV or TDX support)
    size = total - _ENTRY_HEADER_BYTES
    if size < 0 or size > footer:
        raise MalformedError(f"firmware table length {total} does not fit the image")
    body = image[footer - size : footer]
    table: dict[bytes, bytes] = {}
    end = len(body)
    while end >= _ENTRY_HEADER_BYTES:
        (length,) = struct.unpack_from("<H", body, end - _ENTRY_HEADER_BYTES)
        guid = body[end - 16 : end]
        if length < _ENTRY_HEADER_BYTES or length > end:
            raise MalformedError(
                f"firmware table entry {uuid.UUID(bytes_le=guid)} has length "
                f"{length}; {end} bytes remain"
            )
        if guid in table:
            raise MalformedError(f"firmware table repeats entry {uuid.UUID(bytes_le=guid)}")
        if len(table) >= limits.FIRMWARE_TABLE_ENTRIES_MAX:
            raise LimitError(f"firmware table has over {limits.FIRMWARE_TABLE_ENTRIES_MAX} entries")
        table[guid] = body[end - length : end - _ENTRY_HEADER_BYTES]
        end -= length
    if end:
        raise MalformedError(f"firmware table has {end} stray bytes before its first entry")
    return table


def _descriptor(
    image: bytes, table: Mapping[bytes, bytes], guid: bytes, magic: bytes, item_bytes: int
) -> tuple[int, int] | None:
    """(offset of the first item, item count) of the metadata named by `guid`, or None."""
    if guid not in table:
        return None
    what = magic.decode()
    from_end = _u32_entry(table, guid, f"{what} metadata")
    start = len(image) - from_end
    if from_end < 16 or start < 0:
        raise MalformedError(f"{what} metadata offset {from_end} is outside the image")
    sig, length, version, count = struct.unpack_from("<4sIII", image, start)
    if sig != magic:
        raise MalformedError(f"{what} metadata signature is {sig!r}")
    if version != 1:
        raise MalformedError(f"{what} metadata version {version} is not supported")
    if count > limits.FIRMWARE_SECTIONS_MAX:
        raise LimitError(
            f"{what} metadata has {count} sections; limit {limits.FIRMWARE_SECTIONS_MAX}"
        )
    if length != 16 + count * item_bytes or start + length > len(image):
        raise MalformedError(
            f"{what} metadata length {length} does not match {count} sections "
            "or does not fit the image"
        )
    return start + 16, count


def _sev_metadata(image: bytes, table: Mapping[bytes, bytes]) -> tuple[SevSection, ...]:
    found = _descriptor(image, table, SEV_METADATA_GUID, b"ASEV", 12)
    if found is None:
        return ()
    first, count = found
    out: list[SevSection] = []
    pages = 0
    for i in range(count):
        gpa, size, kind = struct.unpack_from("<III", image, first + 12 * i)
        try:
            section = SevSection(gpa, size, SevSectionType(kind))
        except ValueError:
            raise MalformedError(f"SEV metadata section {i} has unknown type {kind}") from None
        if size == 0 or gpa % PAGE_BYTES or size % PAGE_BYTES or gpa + size > FOUR_GIB:
            raise MalformedError(
                f"SEV metadata section {i} (gpa {gpa:#x}, size {size:#x}) is "
                "empty, not page-aligned or beyond 4 GiB"
            )
        single = (
            SevSectionType.SNP_SECRETS,
            SevSectionType.CPUID,
            SevSectionType.SNP_KERNEL_HASHES,
        )
        if section.kind in single and size != PAGE_BYTES:
            raise MalformedError(
                f"SEV metadata section {i} ({section.kind.name}) is {size:#x} "
                "bytes; must be one page"
            )
        pages += size // PAGE_BYTES
        out.append(section)
    _check_pages(pages, "SEV metadata")
    return tuple(out)


def _tdvf_metadata(image: bytes, table: Mapping[bytes, bytes]) -> tuple[TdvfSection, ...]:
    found = _descriptor(image, table, TDX_METADATA_GUID, b"TDVF", 32)
    if found is None:
        return ()
    first, count = found
    out: list[TdvfSection] = []
    pages = 0
    for i in range(count):
        off, raw, gpa, mem, kind, attrs = struct.unpack_from("<IIQQII", image, first + 32 * i)
        try:
            section = TdvfSection(off, raw, gpa, mem, TdvfSectionType(kind), attrs)
        except ValueError:
            raise MalformedError(f"TDVF section {i} has unknown type {kind}") from None
        if gpa % PAGE_BYTES or mem % PAGE_BYTES or mem == 0 or gpa + mem > _GPA_LIMIT:
            raise MalformedError(
                f"TDVF section {i} (gpa {gpa:#x}, size {mem:#x}) is empty, "
                "not page-aligned or beyond the guest address space"
            )
        if raw > mem or off + raw > len(image):
            raise MalformedError(
                f"TDVF section {i} raw data ({off:#x}+{raw:#x}) exceeds its "
                "memory size or the image"
            )
        if attrs & ~(TDVF_ATTR_MR_EXTEND | TDVF_ATTR_PAGE_AUG):
            raise MalformedError(f"TDVF section {i} has unknown attributes {attrs:#x}")
        pages += mem // PAGE_BYTES
        out.append(section)
    _check_pages(pages, "TDVF metadata")
    return tuple(out)


def _check_pages(pages: int, what: str) -> None:
    if pages > limits.FIRMWARE_MEASURED_PAGES_MAX:
        raise LimitError(f"{what} covers {pages} pages; limit {limits.FIRMWARE_MEASURED_PAGES_MAX}")
