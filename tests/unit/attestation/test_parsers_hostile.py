"""Parsers of hostile bytes raise only VerifyError subclasses (never IndexError, struct.error, …):
hypothesis over random bytes and over single/multi-byte mutations and truncations of the real
vectors in tests/vectors/data."""

from __future__ import annotations

import contextlib

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
