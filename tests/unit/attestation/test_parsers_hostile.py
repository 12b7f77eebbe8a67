"""Parsers of hostile bytes raise only VerifyError subclasses (never IndexError, struct.error, …):
hypothesis over random bytes and over single/multi-byte mutations and truncations of the real
vectors in tests/vectors/data."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccgw.verify.attestation import nvidia, sevsnp, tdx
from ccgw.verify.errors import VerifyError
from tests.vectors._paths import vectors_dir

V = vectors_dir()
SNP = (V / "sev-snp" / "attestation.bin").read_bytes()
TDX = (V / "tdx" / "quote_v5_sample.dat").read_bytes()
GPU = bytes.fromhex((V / "nvidia-gpu" / "hopperAttestationReport.txt").read_text().strip())


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    return bytes(b[:cut] if cut is not None else b)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4)
CUT = st.one_of(st.none(), st.integers(0, 9000))
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def never_crashes(parse, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(VerifyError):
        parse(data)


@SETTINGS
@given(EDITS, CUT)
def test_snp_parser(edits: list[tuple[int, int]], cut: int | None) -> None:
    never_crashes(sevsnp.parse_report, mutate(SNP, edits, cut))


@SETTINGS
@given(EDITS, CUT)
def test_tdx_parser(edits: list[tuple[int, int]], cut: int | None) -> None:
    if TDX:
        never_crashes(tdx.parse_quote, mutate(TDX, edits, cut))


@SETTINGS
@given(EDITS, CUT)
def test_gpu_parser(edits: list[tuple[int, int]], cut: int | None) -> None:
    never_crashes(nvidia.parse_report, mutate(GPU, edits, cut))


@SETTINGS
@given(st.binary(max_size=6000))
def test_random_bytes(data: bytes) -> None:
    for parse in (sevsnp.parse_report, tdx.parse_quote, nvidia.parse_report):
        never_crashes(parse, data)


def test_gpu_opaque_fields_of_other_types_and_lengths_parse_but_read_fields_may_not_repeat() -> (
    None
):
    import os as _os

    from cryptography.hazmat.primitives.asymmetric import ec as _ec

    from ccgw.verify.attestation import nvidia
    from ccgw.verify.errors import MalformedError as _Malformed
    from tests.support.evidence_builders import spdm_report

    key = _ec.generate_private_key(_ec.SECP384R1())
    nonce = _os.urandom(32)
    ok = spdm_report(nonce, {1: b"\x01" * 48}, key, {3: b"550\x00", 99: b"x" * 300, 7: b""})
    r = nvidia.parse_report(ok)
    assert r.driver_version == "550" and r.opaque[99] == b"x" * 300 and r.opaque[7] == b""
    # an unknown field may repeat (kept, never read); a field that is read may not
    import struct as _struct

    op = _struct.pack("<HH", 3, 4) + b"550\x00" + _struct.pack("<HH", 3, 4) + b"999\x00"
    with pytest.raises(_Malformed, match="field 3 repeats"):
        nvidia._parse_opaque(op)
    twice = _struct.pack("<HH", 99, 1) + b"a" + _struct.pack("<HH", 99, 1) + b"b"
    assert len(nvidia._parse_opaque(twice)) == 2
    spdm12 = b"\x12" + ok[1:]
    with pytest.raises(_Malformed, match="SPDM version 0x12 is not supported"):
        nvidia.parse_report(spdm12)
