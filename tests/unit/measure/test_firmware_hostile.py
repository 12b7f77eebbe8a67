"""Firmware images are hostile input: every malformed table, metadata block or section is refused
with a bounded, named error (never an IndexError or a huge loop), and random corruption of a valid
image never escapes the VerifyError tree."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccgw.verify import limits
from ccgw.verify.errors import LimitError, MalformedError, VerifyError
from ccgw.verify.measure import boot, firmware, snp, tdx
from tests.unit.measure import fwgen

TDVF_OK = [(0, 0x2000, 0xFFFF0000, 0x2000, 0, 1), (0, 0, 0x800000, 0x4000, 3, 0)]


def test_valid_images_parse() -> None:
    fw = firmware.parse_firmware(fwgen.build(16, tdvf=TDVF_OK))
    assert len(fw.sev_sections) == 6 and len(fw.tdvf_sections) == 2
    assert fw.gpa == (1 << 32) - 16 * 4096


def test_image_without_table_has_no_metadata() -> None:
    fw = firmware.parse_firmware(bytes(8192))
    assert fw.sev_sections == () and fw.tdvf_sections == ()
    with pytest.raises(MalformedError, match="no SEV metadata"):
        snp.launch_digest(fw, snp.SnpShape(1, "EPYC-v4"))
    with pytest.raises(MalformedError, match="no TDX metadata"):
        tdx.mrtd(fw)


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (b"", MalformedError, "multiple of 4096"),
        (bytes(5000), MalformedError, "multiple of 4096"),
        (bytes(limits.FIRMWARE_BYTES_MAX + 4096), LimitError, "limit"),
    ],
)
def test_sizes(image: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        firmware.parse_firmware(image)


def _with_table(table: bytes, pages: int = 4) -> bytes:
    img = bytearray(pages * 4096)
    img[len(img) - 32 - len(table) : len(img) - 32] = table
    return bytes(img)


def _footer(total: int) -> bytes:
    return struct.pack("<H", total) + firmware.FOOTER_GUID


@pytest.mark.parametrize(
    ("table", "error", "match"),
    [
        (_footer(0), MalformedError, "does not fit"),
        (_footer(0xFFFF), MalformedError, "does not fit"),
        (struct.pack("<H", 3) + bytes(16) + _footer(18 + 18), MalformedError, "length 3"),
        (struct.pack("<H", 40) + bytes(16) + _footer(18 + 18), MalformedError, "length 40"),
        (b"xx" + fwgen.entry(bytes(16), b"") + _footer(18 + 20), MalformedError, "stray"),
        (fwgen.entry(bytes(16), b"") * 2 + _footer(18 + 36), MalformedError, "repeats"),
        (
            b"".join(fwgen.entry(bytes([i]) * 16, b"") for i in range(65)) + _footer(18 + 65 * 18),
            LimitError,
            "entries",
        ),
        (
            fwgen.entry(firmware.SEV_METADATA_GUID, b"\x01") + _footer(18 + 19),
            MalformedError,
            "needs 4",
        ),
        (
            fwgen.entry(firmware.SEV_METADATA_GUID, struct.pack("<I", 1 << 20)) + _footer(18 + 22),
            MalformedError,
            "outside the image",
        ),
    ],
)
def test_bad_tables(table: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        firmware.parse_firmware(_with_table(table))


@pytest.mark.parametrize(
    ("sev", "error", "match"),
    [
        ([(0x800000, 0x1000, 9)], MalformedError, "unknown type 9"),
        ([(0x800010, 0x1000, 1)], MalformedError, "page-aligned"),
        ([(0x800000, 0x1001, 1)], MalformedError, "page-aligned"),
        ([(0x800000, 0, 1)], MalformedError, "empty"),
        ([(0xFFFFF000, 0x2000, 1)], MalformedError, "beyond 4 GiB"),
        ([(0x800000, 0x2000, 2)], MalformedError, "one page"),
        ([(0x800000, 0x2000, 0x10)], MalformedError, "one page"),
        ([(0, 0xF0000000, 1)], LimitError, "pages"),
        ([(0x800000, 0x1000, 1)] * 65, LimitError, "sections"),
    ],
)
def test_bad_sev_metadata(sev: list[fwgen.SevItem], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        firmware.parse_firmware(fwgen.build(16, sev=sev))


def test_bad_sev_metadata_header() -> None:
    img = bytearray(fwgen.build(16))
    at = img.find(b"ASEV")
    for offset, value, match in (
        (0, b"XSEV", "signature"),
        (8, b"\x02", "version 2"),
        (4, b"\xff", "length"),
    ):
        bad = bytearray(img)
        bad[at + offset : at + offset + len(value)] = value
        with pytest.raises(MalformedError, match=match):
            firmware.parse_firmware(bytes(bad))


@pytest.mark.parametrize(
    ("item", "match"),
    [
        ((0, 0x2000, 0xFFFF0010, 0x2000, 0, 1), "page-aligned"),
        ((0, 0x3000, 0xFFFF0000, 0x2000, 0, 1), "exceeds"),
        ((0x10000, 0x2000, 0xFFFF0000, 0x2000, 0, 1), "exceeds"),
        ((0, 0x1000, 0xFFFF0000, 0x2000, 0, 4), "unknown attributes"),
        ((0, 0x1000, 0xFFFF0000, 0x2000, 99, 1), "unknown type"),
        ((0, 0x1000, 1 << 52, 0x2000, 0, 1), "beyond"),
    ],
)
def test_bad_tdvf_sections(item: fwgen.TdvfItem, match: str) -> None:
    with pytest.raises(MalformedError, match=match):
        firmware.parse_firmware(fwgen.build(16, tdvf=[item]))


def test_missing_entries_are_named() -> None:
    fw = firmware.parse_firmware(fwgen.build(16, reset_eip=None))
    with pytest.raises(MalformedError, match="reset block"):
        snp.launch_digest(fw, snp.SnpShape(1, "EPYC-v4"))
    fw = firmware.parse_firmware(fwgen.build(16, hashes_gpa=None))
    with pytest.raises(MalformedError, match="hash table"):
        snp.launch_digest(fw, snp.SnpShape(1, "EPYC-v4"), boot.kernel_boot(b"k", None, ""))
    fw = firmware.parse_firmware(fwgen.build(16, hashes_gpa=0x80FF80))
    with pytest.raises(MalformedError, match="does not fit the page"):
        snp.launch_digest(fw, snp.SnpShape(1, "EPYC-v4"), boot.kernel_boot(b"k", None, ""))


def test_boot_inputs_are_bounded() -> None:
    with pytest.raises(LimitError):
        boot.kernel_boot(b"k", None, "x" * (limits.KERNEL_CMDLINE_BYTES_MAX + 1))
    with pytest.raises(MalformedError, match="NUL"):
        boot.kernel_boot(b"k", None, "a\x00b")
    with pytest.raises(MalformedError, match="empty"):
        boot.kernel_boot(b"", None, "")


BASE = fwgen.build(4, tdvf=TDVF_OK)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(len(BASE) - 4096, len(BASE) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=12,
    )
)
def test_random_corruption_stays_in_the_error_tree(edits: list[tuple[int, int]]) -> None:
    img = bytearray(BASE)
    for at, value in edits:
        img[at] = value
    try:
        fw = firmware.parse_firmware(bytes(img))
        snp.launch_digest(fw, snp.SnpShape(2, "EPYC-v4"), boot.kernel_boot(b"k", b"i", "c"))
        tdx.mrtd(fw)
    except VerifyError:
        pass
