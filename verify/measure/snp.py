"""The AMD SEV-SNP launch digest, computed offline (SEV-SNP firmware ABI spec §8.17, "Launch
Digest Calculation"; QEMU and KVM's launch sequence).

The PSP keeps a running SHA-384 digest. Every page the hypervisor adds with SNP_LAUNCH_UPDATE
replaces it with SHA-384 of a 0x70-byte PAGE_INFO record:

    digest (48) ‖ contents (48) ‖ u16 length 0x70 ‖ u8 page type ‖ u8 IMI ‖ u8 VMPL3/2/1 perms
    ‖ u8 reserved ‖ u64 GPA                                                     (little-endian)

contents = SHA-384 of the page for normal and VMSA pages, zeros for every other type. QEMU adds,
in order: the firmware image (mapped to end at 4 GiB), every SEV metadata section of the firmware
(zero / secrets / CPUID pages; the kernel-hashes page when booting a kernel directly), then one
VMSA page per vCPU (the boot processor's first, starting at the reset vector, then the APs at the
firmware's SEV-ES reset block). The VMSA holds the initial register state, which differs slightly
between hypervisors (`Vmm`), and the vCPU's CPUID signature in RDX.

Checked against the `sev-snp-measure` reference (tests/unit/measure/) and its published vectors.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from ccgw.verify import limits
from ccgw.verify.errors import LimitError, MalformedError
from ccgw.verify.measure.boot import KernelBoot
from ccgw.verify.measure.firmware import PAGE_BYTES, Firmware, SevSectionType, guid_le

DIGEST_BYTES = 48
VMSA_GPA = 0xFFFFFFFFF000  # the RMP records VMSA pages at GPA -1, page-aligned, bits > 51 clear
BSP_RESET_EIP = 0xFFFFFFF0
_PAGE_INFO_BYTES = 0x70


class PageType(IntEnum):
    NORMAL = 1
    VMSA = 2
    ZERO = 3
    UNMEASURED = 4
    SECRETS = 5
    CPUID = 6


class Vmm(StrEnum):
    QEMU = "qemu"
    EC2 = "ec2"
    GCE = "gce"


def cpuid_signature(family: int, model: int, stepping: int) -> int:
    """CPUID Fn0000_0001_EAX for a family/model/stepping (AMD CPUID specification #25481)."""
    base, ext = (0xF, (family - 0xF) & 0xFF) if family > 0xF else (family, 0)
    return (
        (ext << 20)
        | (((model >> 4) & 0xF) << 16)
        | (base << 8)
        | ((model & 0xF) << 4)
        | (stepping & 0xF)
    )


_FAMILIES = {
    "EPYC": (23, 1, 2),
    "EPYC-Rome": (23, 49, 0),
    "EPYC-Milan": (25, 1, 1),
    "EPYC-Genoa": (25, 17, 0),
    "EPYC-Turin": (26, 0, 0),
}
_VERSIONS = {
    "EPYC": ("v1", "v2", "v3", "v4", "IBPB"),
    "EPYC-Rome": ("v1", "v2", "v3"),
    "EPYC-Milan": ("v1", "v2"),
    "EPYC-Genoa": ("v1",),
    "EPYC-Turin": (),
}
# QEMU's EPYC CPU models (builtin_x86_defs) → the CPUID signature the guest sees.
VCPU_SIGNATURES: dict[str, int] = {
    f"{name}{suffix}": cpuid_signature(*fms)
    for name, fms in _FAMILIES.items()
    for suffix in ("", *(f"-{v}" for v in _VERSIONS[name]))
}


def vcpu_signature(vcpu_type: str) -> int:
    try:
        return VCPU_SIGNATURES[vcpu_type]
    except KeyError:
        known = ", ".join(sorted(VCPU_SIGNATURES))
        raise MalformedError(f"unknown vCPU type {vcpu_type!r}; known: {known}") from None


class GuestContext:
    """The running launch digest (optionally seeded with a precomputed firmware digest)."""

    def __init__(self, seed: bytes = bytes(DIGEST_BYTES)) -> None:
        if len(seed) != DIGEST_BYTES:
            raise MalformedError(f"a launch digest seed is {DIGEST_BYTES} bytes")
        self.digest = seed

    def add(self, kind: PageType, gpa: int, contents: bytes) -> None:
        info = (
            self.digest
            + contents
            + struct.pack("<HBBBBBBQ", _PAGE_INFO_BYTES, kind, 0, 0, 0, 0, 0, gpa)
        )
        self.digest = hashlib.sha384(info).digest()

    def add_normal(self, gpa: int, data: bytes) -> None:
        for off in range(0, len(data), PAGE_BYTES):
            self.add(
                PageType.NORMAL, gpa + off, hashlib.sha384(data[off : off + PAGE_BYTES]).digest()
            )

    def add_empty(self, kind: PageType, gpa: int, size: int) -> None:
        for off in range(0, size, PAGE_BYTES):
            self.add(kind, gpa + off, bytes(DIGEST_BYTES))

    def add_vmsa(self, page: bytes) -> None:
        self.add(PageType.VMSA, VMSA_GPA, hashlib.sha384(page).digest())


# --- kernel hashes (QEMU's "kernel-hashes=on": the table OVMF checks before booting a kernel) ---

_TABLE_GUID = guid_le("9438d606-4f22-4cc9-b479-a793d411fd21")
_CMDLINE_GUID = guid_le("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")
_INITRD_GUID = guid_le("44baf731-3a2f-4bd7-9af1-41e29169781d")
_KERNEL_GUID = guid_le("4de79437-abd2-427f-b835-d5b172d2045b")
_ENTRY_BYTES = 16 + 2 + 32
_TABLE_BYTES = 16 + 2 + 3 * _ENTRY_BYTES  # 168, padded to 176 in guest memory


def cmdline_sha256(cmdline: str) -> bytes:
    return hashlib.sha256(cmdline.encode() + b"\x00").digest()


def sev_hashes_table(boot: KernelBoot) -> bytes:
    """The padded table QEMU writes into the kernel-hashes page: cmdline, initrd, kernel."""
    entries = b"".join(
        guid + struct.pack("<H", _ENTRY_BYTES) + digest
        for guid, digest in (
            (_CMDLINE_GUID, cmdline_sha256(boot.cmdline)),
            (_INITRD_GUID, boot.initrd_sha256),
            (_KERNEL_GUID, boot.kernel_sha256),
        )
    )
    table = _TABLE_GUID + struct.pack("<H", _TABLE_BYTES) + entries
    return table + bytes(-len(table) % 16)


def _hashes_page(fw: Firmware, boot: KernelBoot) -> bytes:
    offset = fw.sev_hashes_table_gpa() % PAGE_BYTES
    table = sev_hashes_table(boot)
    if offset + len(table) > PAGE_BYTES:
        raise MalformedError(
            f"firmware puts the kernel hashes table at page offset {offset:#x}; "
            "it does not fit the page"
        )
    return bytes(offset) + table + bytes(PAGE_BYTES - offset - len(table))


# --- VMSA: the initial register state of each vCPU (AMD APM vol. 2, table B-4) ---------------


def _segment(page: bytearray, offset: int, selector: int, attrib: int, base: int) -> None:
    struct.pack_into("<HHIQ", page, offset, selector, attrib, 0xFFFF, base)


def vmsa_page(eip: int, sev_features: int, vcpu_sig: int, vmm: Vmm) -> bytes:
    cs_attr, ss_attr, tr_attr, g_pat = 0x9B, 0x93, 0x8B, 0x0007040600070406
    rdx, mxcsr, fcw = vcpu_sig, 0x1F80, 0x37F
    if vmm is Vmm.EC2:
        cs_attr = 0x9A if eip == BSP_RESET_EIP else 0x9B
        ss_attr, tr_attr, rdx, mxcsr, fcw = 0x92, 0x83, 0x600, 0, 0
    elif vmm is Vmm.GCE:
        g_pat, rdx, mxcsr, fcw = 0x00070106, 0x600, 0, 0
    page = bytearray(PAGE_BYTES)
    for i, attr in enumerate((0x93, cs_attr, ss_attr, 0x93, 0x93, 0x93)):  # es cs ss ds fs gs
        is_cs = i == 1
        _segment(page, 16 * i, 0xF000 if is_cs else 0, attr, eip & 0xFFFF0000 if is_cs else 0)
    _segment(page, 0x60, 0, 0, 0)  # gdtr
    _segment(page, 0x70, 0, 0x82, 0)  # ldtr
    _segment(page, 0x80, 0, 0, 0)  # idtr
    _segment(page, 0x90, 0, tr_attr, 0)  # tr
    for offset, value in (
        (0xD0, 0x1000),  # EFER.SVME (set by KVM)
        (0x148, 0x40),  # CR4.MCE
        (0x158, 0x10),  # CR0.ET
        (0x160, 0x400),  # DR7
        (0x168, 0xFFFF0FF0),  # DR6
        (0x170, 0x2),  # RFLAGS
        (0x178, eip & 0xFFFF),  # RIP
        (0x268, g_pat),
        (0x310, rdx),
        (0x3B0, sev_features),
        (0x3E8, 0x1),  # XCR0
    ):
        struct.pack_into("<Q", page, offset, value)
    struct.pack_into("<I", page, 0x408, mxcsr)
    struct.pack_into("<H", page, 0x410, fcw)
    return bytes(page)


# --- the launch digest --------------------------------------------------------------------------


@dataclass(frozen=True)
class SnpShape:
    """What besides the files the digest depends on."""

    vcpus: int
    vcpu_type: str  # a QEMU EPYC model name (VCPU_SIGNATURES); ignored by EC2 and GCE
    guest_features: int = 0x1  # the VMSA's SEV_FEATURES (bit 0 SNPActive), as the host sets it
    vmm: Vmm = Vmm.QEMU

    def __post_init__(self) -> None:
        if not 1 <= self.vcpus <= limits.VCPUS_MAX:
            raise LimitError(f"vCPU count {self.vcpus} outside 1..{limits.VCPUS_MAX}")
        if not 0 <= self.guest_features < 1 << 64:
            raise MalformedError("guest features must fit 64 bits")
        if self.vmm is Vmm.QEMU:
            vcpu_signature(self.vcpu_type)


def firmware_digest(fw: Firmware) -> bytes:
    """The digest after the firmware pages alone ("OVMF hash"): a launch digest can start from it
    when only the firmware's metadata, not all of its bytes, is at hand."""
    ctx = GuestContext()
    ctx.add_normal(fw.gpa, fw.image)
    return ctx.digest


def launch_digest(
    fw: Firmware,
    shape: SnpShape,
    boot: KernelBoot | None = None,
    firmware_seed: bytes | None = None,
) -> bytes:
    if not fw.sev_sections:
        raise MalformedError("firmware has no SEV metadata: it cannot launch an SEV-SNP guest")
    if boot is not None and not fw.has_sev_section(SevSectionType.SNP_KERNEL_HASHES):
        raise MalformedError(
            "a kernel is given but the firmware has no SNP kernel-hashes "
            "section: it would not measure the kernel"
        )
    ctx = GuestContext(firmware_seed) if firmware_seed is not None else GuestContext()
    if firmware_seed is None:
        ctx.add_normal(fw.gpa, fw.image)
    cpuid_pages: list[int] = []
    for s in fw.sev_sections:
        if s.kind is SevSectionType.SNP_SEC_MEM:
            kind = PageType.UNMEASURED if shape.vmm is Vmm.GCE else PageType.ZERO
            ctx.add_empty(kind, s.gpa, s.size)
        elif s.kind is SevSectionType.SNP_SECRETS:
            ctx.add(PageType.SECRETS, s.gpa, bytes(DIGEST_BYTES))
        elif s.kind is SevSectionType.CPUID:
            cpuid_pages.append(s.gpa)
            if shape.vmm is not Vmm.EC2:  # EC2 adds the CPUID pages after all other sections
                ctx.add(PageType.CPUID, s.gpa, bytes(DIGEST_BYTES))
        elif s.kind is SevSectionType.SNP_KERNEL_HASHES and boot is not None:
            ctx.add_normal(s.gpa, _hashes_page(fw, boot))
        else:  # kernel-hashes page without a kernel; SVSM calling area
            ctx.add_empty(PageType.ZERO, s.gpa, s.size)
    if shape.vmm is Vmm.EC2:
        for gpa in cpuid_pages:
            ctx.add(PageType.CPUID, gpa, bytes(DIGEST_BYTES))
    sig = vcpu_signature(shape.vcpu_type) if shape.vmm is Vmm.QEMU else 0
    bsp = vmsa_page(BSP_RESET_EIP, shape.guest_features, sig, shape.vmm)
    ap = vmsa_page(fw.sev_es_reset_eip(), shape.guest_features, sig, shape.vmm)
    for i in range(shape.vcpus):
        ctx.add_vmsa(bsp if i == 0 else ap)
    return ctx.digest
