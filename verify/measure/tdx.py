"""Intel TDX launch measurements computed offline: MRTD from a TDVF (OVMF with TDX metadata) image,
and RTMR[1] / RTMR[2] for a kernel booted directly by OVMF.

MRTD (Intel TDX module spec, TDH.MEM.PAGE.ADD / TDH.MR.EXTEND): SHA-384 over 128-byte records.
For each 4 KiB page the host adds, the record is "MEM.PAGE.ADD" zero-padded to 16 bytes, the u64
GPA, zeros to 128; for each 256-byte chunk it extends, "MR.EXTEND" padded to 16, the u64 GPA,
zeros to 128, then the 256 bytes of the chunk. Every TDVF section is added (except PAGE.AUG ones,
accepted later by the guest); sections with the MR.EXTEND attribute are also extended, with their
raw data zero-filled to the section size. Current QEMU/KVM add and extend page by page
(`single-pass`); QEMU 8.x added all of a section's pages before extending (`two-pass`).

RTMRs are extended by the guest: RTMR = SHA-384(RTMR ‖ event digest), from zero. For a kernel that
OVMF loads from QEMU's fw_cfg, the events are (the sequence dstack-mr documents for OVMF):
  RTMR[1]: the Authenticode SHA-384 of the kernel as QEMU patched its setup header, then
           "Calling EFI Application from Boot Option", the separator, "Exit Boot Services
           Invocation", "Exit Boot Services Returned with Success";
  RTMR[2]: SHA-384 of the command line as UTF-16LE with a NUL, then SHA-384 of the initrd.
RTMR[0] (firmware configuration, ACPI tables, TD HOB) depends on the whole VM configuration and is
not computed here. Not cross-checked against a reference implementation (none is packaged for
Python): see the ADR on releases.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from ccgw.verify.errors import LimitError, MalformedError
from ccgw.verify.measure.boot import KernelBoot
from ccgw.verify.measure.firmware import PAGE_BYTES, Firmware, TdvfSection

DIGEST_BYTES = 48
_CHUNK_BYTES = 256
_RECORD_BYTES = 128
_PE_SECTIONS_MAX = 96  # the PE/COFF format's own limit
RTMR_EVENTS_MAX = 4096
QEMU_ACPI_DATA_BYTES = 0x28000  # QEMU's reserved ACPI data size, which bounds the initrd address


class PageAddOrder(StrEnum):
    INTERLEAVED = "single-pass"  # add and extend page by page (QEMU >= 9)
    ADD_THEN_EXTEND = "two-pass"  # all adds of a section, then its extends (QEMU 8)


def _record(op: bytes, gpa: int) -> bytes:
    return op.ljust(16, b"\x00") + struct.pack("<Q", gpa) + bytes(_RECORD_BYTES - 24)


def mrtd(fw: Firmware, order: PageAddOrder = PageAddOrder.INTERLEAVED) -> bytes:
    if not fw.tdvf_sections:
        raise MalformedError("firmware has no TDX metadata: it cannot launch a TD")
    h = hashlib.sha384()
    for s in fw.tdvf_sections:
        memory = b""
        if s.extended:
            memory = fw.image[s.data_offset : s.data_offset + s.raw_size].ljust(
                s.memory_size, b"\0"
            )
        pages = range(0, s.memory_size, PAGE_BYTES)
        if order is PageAddOrder.ADD_THEN_EXTEND:
            for off in pages:
                _page_add(h, s, off)
            for off in pages:
                _mr_extend(h, s, off, memory)
        else:
            for off in pages:
                _page_add(h, s, off)
                _mr_extend(h, s, off, memory)
    return h.digest()


def _page_add(h: hashlib._Hash, s: TdvfSection, off: int) -> None:
    if not s.page_aug:
        h.update(_record(b"MEM.PAGE.ADD", s.gpa + off))


def _mr_extend(h: hashlib._Hash, s: TdvfSection, off: int, memory: bytes) -> None:
    if not s.extended:
        return
    for c in range(off, off + PAGE_BYTES, _CHUNK_BYTES):
        h.update(_record(b"MR.EXTEND", s.gpa + c))
        h.update(memory[c : c + _CHUNK_BYTES])


def replay(events: Sequence[bytes]) -> bytes:
    """The RTMR value after extending each 48-byte event digest in order, starting from zero."""
    if len(events) > RTMR_EVENTS_MAX:
        raise LimitError(f"{len(events)} events; limit {RTMR_EVENTS_MAX}")
    value = bytes(DIGEST_BYTES)
    for e in events:
        if len(e) != DIGEST_BYTES:
            raise MalformedError("an RTMR event digest is 48 bytes (SHA-384)")
        value = hashlib.sha384(value + e).digest()
    return value


# --- RTMR[1] / RTMR[2] for a kernel booted directly by OVMF -----------------------------------


def _u16(data: bytes | bytearray, off: int, what: str) -> int:
    if not 0 <= off <= len(data) - 2:
        raise MalformedError(f"kernel image too short for its {what}")
    return int.from_bytes(data[off : off + 2], "little")


def _u32(data: bytes | bytearray, off: int, what: str) -> int:
    if not 0 <= off <= len(data) - 4:
        raise MalformedError(f"kernel image too short for its {what}")
    return int.from_bytes(data[off : off + 4], "little")


def authenticode_sha384(pe: bytes) -> bytes:
    """The Authenticode digest of a PE/COFF image as edk2's measured boot hashes it: headers
    without the checksum and the certificate-table entry, sections in file order, then any
    trailing bytes that are not the certificate table."""
    nt = _u32(pe, 0x3C, "PE header offset")
    if _u32(pe, nt, "PE signature") != 0x00004550:
        raise MalformedError(
            "kernel is not a PE/COFF image (no PE signature): build it with CONFIG_EFI_STUB"
        )
    coff, opt = nt + 4, nt + 24
    sections, opt_bytes = _u16(pe, coff + 2, "section count"), _u16(pe, coff + 16, "header size")
    magic = _u16(pe, opt, "optional header magic")
    if magic not in (0x10B, 0x20B) or sections > _PE_SECTIONS_MAX:
        raise MalformedError(f"PE optional header magic {magic:#x} or {sections} sections")
    checksum = opt + 64
    dirs_at, count_at = (opt + 112, opt + 108) if magic == 0x20B else (opt + 96, opt + 92)
    has_cert = _u32(pe, count_at, "data directory count") > 4
    cert_entry = dirs_at + 4 * 8
    headers = _u32(pe, opt + 60, "header size")
    if not cert_entry + 8 <= headers <= len(pe):
        raise MalformedError("PE headers do not fit the image")
    h = hashlib.sha384()
    h.update(pe[:checksum])
    h.update(pe[checksum + 4 : cert_entry])
    h.update(pe[cert_entry + 8 : headers])
    table = opt + opt_bytes
    spans = []
    for i in range(sections):
        size = _u32(pe, table + 40 * i + 16, "section size")
        start = _u32(pe, table + 40 * i + 20, "section offset")
        if size:
            if start + size > len(pe):
                raise MalformedError(f"PE section {i} extends past the image")
            spans.append((start, size))
    hashed = headers
    for start, size in sorted(spans):
        h.update(pe[start : start + size])
        hashed += size
    cert_bytes = _u32(pe, cert_entry + 4, "certificate table size") if has_cert else 0
    if len(pe) > hashed + cert_bytes:
        h.update(pe[hashed : len(pe) - cert_bytes])
    return h.digest()


def qemu_patched_kernel(kernel: bytes, initrd_bytes: int, memory_bytes: int) -> bytes:
    """The kernel as QEMU hands it to OVMF over fw_cfg: x86 setup header fields written by the
    loader (hw/i386/x86.c, q35 memory layout)."""
    kd = bytearray(kernel)
    if _u32(kd, 0x202, "setup header") != 0x53726448:  # "HdrS"
        raise MalformedError("kernel has no x86 boot protocol header (HdrS)")
    protocol = _u16(kd, 0x206, "boot protocol version")
    if protocol < 0x202:
        raise MalformedError(f"kernel boot protocol {protocol:#x} is older than 2.02")
    real, cmdline = (0x10000, 0x20000) if kd[0x211] & 0x01 else (0x90000, 0x9A000)
    kd[0x210] = 0xB0  # type_of_loader: QEMU
    kd[0x211] |= 0x80  # CAN_USE_HEAP
    struct.pack_into("<H", kd, 0x224, cmdline - real - 0x200)  # heap_end_ptr
    struct.pack_into("<I", kd, 0x228, cmdline)  # cmd_line_ptr
    if initrd_bytes:
        if protocol >= 0x20C and _u16(kd, 0x236, "xloadflags") & 0x40:
            initrd_max = 0xFFFFFFFF
        else:
            initrd_max = (
                _u32(kd, 0x22C, "initrd_addr_max") if protocol >= 0x203 else 0
            ) or 0x37FFFFFF
        lowmem = 0xB0000000 if memory_bytes < 0xB0000000 else 0x80000000
        below_4g = min(memory_bytes, lowmem)
        if below_4g <= QEMU_ACPI_DATA_BYTES:
            raise MalformedError("guest memory is smaller than QEMU's ACPI data")
        initrd_max = min(initrd_max, below_4g - QEMU_ACPI_DATA_BYTES - 1)
        if initrd_bytes >= initrd_max:
            raise MalformedError("initrd does not fit below the kernel's initrd address limit")
        struct.pack_into("<II", kd, 0x218, (initrd_max - initrd_bytes) & ~0xFFF, initrd_bytes)
    return bytes(kd)


def _sha384(data: bytes) -> bytes:
    return hashlib.sha384(data).digest()


def rtmr1_events(boot: KernelBoot, memory_bytes: int) -> list[bytes]:
    kernel = qemu_patched_kernel(boot.kernel, boot.initrd_bytes, memory_bytes)
    return [
        authenticode_sha384(kernel),
        _sha384(b"Calling EFI Application from Boot Option"),
        _sha384(bytes(4)),  # separator
        _sha384(b"Exit Boot Services Invocation"),
        _sha384(b"Exit Boot Services Returned with Success"),
    ]


def rtmr2_events(boot: KernelBoot) -> list[bytes]:
    return [_sha384(boot.cmdline.encode("utf-16-le") + b"\0\0"), boot.initrd_sha384]


@dataclass(frozen=True)
class TdxMeasurements:
    mrtd: bytes
    rtmr1: bytes | None  # None without a directly booted kernel
    rtmr2: bytes | None


def measure_td(
    fw: Firmware,
    boot: KernelBoot | None,
    memory_bytes: int,
    order: PageAddOrder = PageAddOrder.INTERLEAVED,
) -> TdxMeasurements:
    if boot is None:
        return TdxMeasurements(mrtd(fw, order), None, None)
    return TdxMeasurements(
        mrtd(fw, order), replay(rtmr1_events(boot, memory_bytes)), replay(rtmr2_events(boot))
    )
