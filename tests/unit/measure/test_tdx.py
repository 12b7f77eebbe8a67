"""TDX launch measurements. No reference implementation is packaged for Python, so MRTD is checked
against a second computation written here straight from the TDX module spec's record layout, on
generated TDVF images and on Debian's real OVMF build (its TDVF metadata parse is checked field by
field); the RTMR event digests are checked by their defining properties."""

from __future__ import annotations

import hashlib
import lzma
import struct

import pytest

from ccgw.verify.errors import LimitError, MalformedError
from ccgw.verify.measure import boot, firmware, tdx
from tests.unit.measure import fwgen
from tests.vectors._paths import DATA

ZERO48 = bytes(48)


def spec_mrtd(image: bytes, sections: list[fwgen.TdvfItem], interleaved: bool = True) -> bytes:
    """MRTD per the TDX module spec, written as the list of 128-byte records it hashes."""
    records: list[bytes] = []
    for off, raw, gpa, mem, _kind, attrs in sections:
        data = image[off : off + raw] + bytes(mem - raw)
        adds = (
            []
            if attrs & 2
            else [
                [b"MEM.PAGE.ADD\0\0\0\0" + struct.pack("<Q", gpa + p) + bytes(104)]
                for p in range(0, mem, 4096)
            ]
        )
        exts = [
            [
                b"MR.EXTEND"
                + bytes(7)
                + struct.pack("<Q", gpa + p + c)
                + bytes(104)
                + data[p + c : p + c + 256]
                for c in range(0, 4096, 256)
            ]
            if attrs & 1
            else []
            for p in range(0, mem, 4096)
        ]
        if interleaved:
            for i in range(mem // 4096):
                records += (adds[i] if adds else []) + exts[i]
        else:
            records += [r for a in adds for r in a] + [r for e in exts for r in e]
    return hashlib.sha384(b"".join(records)).digest()


SECTIONS: list[fwgen.TdvfItem] = [
    (0x1000, 0x3000, 0xFFFC0000, 0x3000, 0, 1),  # BFV, extended
    (0x4000, 0x1000, 0xFFFB0000, 0x2000, 1, 1),  # CFV, raw shorter than memory: zero-filled
    (0, 0, 0x809000, 0x2000, 2, 0),  # TD HOB: added, not extended
    (0, 0, 0x900000, 0x4000, 4, 2),  # PermMem with PAGE.AUG: neither
]


def test_mrtd_matches_the_spec_layout() -> None:
    image = fwgen.build(16, sev=None, tdvf=SECTIONS)
    fw = firmware.parse_firmware(image)
    assert tdx.mrtd(fw) == spec_mrtd(image, SECTIONS)
    two = tdx.mrtd(fw, tdx.PageAddOrder.ADD_THEN_EXTEND)
    assert two == spec_mrtd(image, SECTIONS, interleaved=False)
    assert two != tdx.mrtd(fw)  # the order matters once a section has two extended pages


def test_mrtd_covers_the_extended_bytes_only() -> None:
    image = bytearray(fwgen.build(16, sev=None, tdvf=SECTIONS))
    base = tdx.mrtd(firmware.parse_firmware(bytes(image)))
    image[0x1800] ^= 1  # inside the BFV
    assert tdx.mrtd(firmware.parse_firmware(bytes(image))) != base
    image[0x1800] ^= 1
    image[0x9000] ^= 1  # outside every section
    assert tdx.mrtd(firmware.parse_firmware(bytes(image))) == base


def test_real_ovmf_tdvf_metadata() -> None:
    """Debian's OVMF.fd (edk2 2022.11) declares the TDVF layout of OvmfPkg/ResetVector's
    X64/IntelTdxMetadata.asm: BFV (extended), CFV (variables, added only), temporary memory and
    the TD HOB. MRTD over the real image equals the spec-layout computation."""
    image = lzma.decompress((DATA / "ovmf" / "OVMF.fd.xz").read_bytes())
    fw = firmware.parse_firmware(image)
    got = [
        (s.data_offset, s.raw_size, s.gpa, s.memory_size, int(s.kind), s.attributes)
        for s in fw.tdvf_sections
    ]
    assert got[:2] == [
        (0x20000, 0x1E0000, 0xFFE20000, 0x1E0000, 0, 1),
        (0, 0x20000, 0xFFE00000, 0x20000, 1, 0),
    ]
    assert {k for *_, k, _a in got[2:]} == {2, 3}
    assert tdx.mrtd(fw) == spec_mrtd(image, got)


def test_replay() -> None:
    a, b = hashlib.sha384(b"a").digest(), hashlib.sha384(b"b").digest()
    assert tdx.replay([]) == ZERO48
    assert tdx.replay([a, b]) == hashlib.sha384(hashlib.sha384(ZERO48 + a).digest() + b).digest()
    with pytest.raises(MalformedError):
        tdx.replay([b"short"])
    with pytest.raises(LimitError):
        tdx.replay([a] * (tdx.RTMR_EVENTS_MAX + 1))


def make_pe(sections: list[tuple[int, bytes]], cert: bytes = b"", trailing: bytes = b"") -> bytes:
    """A minimal PE32+ image that is also an x86 boot image (setup header at 0x1f1, as bzImage)."""
    headers = 0x400
    img = bytearray(headers)
    img[0:2] = b"MZ"
    struct.pack_into("<I", img, 0x3C, 0x80)
    img[0x80:0x84] = b"PE\0\0"
    coff, opt = 0x84, 0x98
    struct.pack_into("<HH", img, coff, 0x8664, len(sections))
    struct.pack_into("<H", img, coff + 16, 240)
    struct.pack_into("<H", img, opt, 0x20B)
    struct.pack_into("<I", img, opt + 60, headers)
    struct.pack_into("<I", img, opt + 64, 0xDEADBEEF)  # checksum: not hashed
    struct.pack_into("<I", img, opt + 108, 16)
    body = b"".join(d for _, d in sections)
    for i, (ptr, data) in enumerate(sections):
        struct.pack_into("<II", img, opt + 240 + 40 * i + 16, len(data), ptr)
    img[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", img, 0x206, 0x20F)
    img[0x211] = 0x01  # LOADED_HIGH
    struct.pack_into("<I", img, 0x22C, 0x7FFFFFFF)
    struct.pack_into("<H", img, 0x236, 0x40)  # can be loaded above 4G
    out = bytes(img) + body + trailing
    if cert:
        struct.pack_into("<II", img, opt + 112 + 32, len(out), len(cert))
        out = bytes(img) + body + trailing + cert
    return out


SECS = [(0x400, b"A" * 0x200), (0x600, b"B" * 0x400)]


def test_authenticode_definition() -> None:
    pe = make_pe(SECS)
    opt = 0x98
    expected = hashlib.sha384(
        pe[: opt + 64]
        + pe[opt + 68 : opt + 144]
        + pe[opt + 152 : 0x400]
        + b"A" * 0x200
        + b"B" * 0x400
    ).digest()
    assert tdx.authenticode_sha384(pe) == expected


def test_authenticode_ignores_checksum_and_cert() -> None:
    base = tdx.authenticode_sha384(make_pe(SECS))
    pe = bytearray(make_pe(SECS))
    pe[0x98 + 64] ^= 0xFF
    assert tdx.authenticode_sha384(bytes(pe)) == base
    assert tdx.authenticode_sha384(make_pe(SECS, cert=b"C" * 64)) == base
    assert tdx.authenticode_sha384(make_pe(SECS, trailing=b"T" * 8)) != base
    pe[0x500] ^= 1  # section data
    assert tdx.authenticode_sha384(bytes(pe)) != base


@pytest.mark.parametrize(
    "pe",
    [
        b"MZ",
        b"MZ" + bytes(0x3A) + struct.pack("<I", 0x10_0000),
        make_pe(SECS)[:0x300],
        make_pe([(0x400, b"A" * 0x200), (0x5000, b"B" * 0x10)])[:0x700],
    ],
)
def test_authenticode_hostile(pe: bytes) -> None:
    with pytest.raises(MalformedError):
        tdx.authenticode_sha384(pe)


def test_qemu_patch_and_memory_dependence() -> None:
    kernel = make_pe(SECS)
    k = tdx.qemu_patched_kernel(kernel, 0x100000, 0x80000000)
    assert k[0x210] == 0xB0 and k[0x211] & 0x80
    assert struct.unpack_from("<I", k, 0x228)[0] == 0x20000
    addr = struct.unpack_from("<II", k, 0x218)
    assert addr == ((0x80000000 - 0x28000 - 1 - 0x100000) & ~0xFFF, 0x100000)
    at_2g = tdx.rtmr1_events(boot.kernel_boot(kernel, b"i" * 0x100000, ""), 0x80000000)[0]
    at_8g = tdx.rtmr1_events(boot.kernel_boot(kernel, b"i" * 0x100000, ""), 0x200000000)[0]
    at_1g = tdx.rtmr1_events(boot.kernel_boot(kernel, b"i" * 0x100000, ""), 0x40000000)[0]
    assert at_2g == at_8g != at_1g
    with pytest.raises(MalformedError, match="HdrS"):
        tdx.qemu_patched_kernel(bytes(0x1000), 0, 0x80000000)


def test_rtmr2_and_measure_td() -> None:
    kb = boot.kernel_boot(make_pe(SECS), b"initrd", "console=ttyS0")
    events = tdx.rtmr2_events(kb)
    assert events == [
        hashlib.sha384("console=ttyS0\0".encode("utf-16-le")).digest(),
        hashlib.sha384(b"initrd").digest(),
    ]
    fw = firmware.parse_firmware(fwgen.build(16, sev=None, tdvf=SECTIONS))
    m = tdx.measure_td(fw, kb, 0x200000000)
    assert m.rtmr2 == tdx.replay(events) and m.mrtd == tdx.mrtd(fw)
    assert tdx.measure_td(fw, None, 0).rtmr1 is None
