"""SEV-SNP features with no real sample in tests/vectors/data, built from the ABI spec and signed by
test vendors: report versions 3 and 5, Genoa and Turin (TCB layout with FMC), VLEK, the VCEK's TCB
and hwID claims against the report."""

from __future__ import annotations

import pytest

from ccgw.verify.attestation import sevsnp
from ccgw.verify.errors import ChainError, MalformedError
from tests.support.evidence_builders import NOW, SnpBuilder, amd


def verify(b: SnpBuilder, report: bytes | None = None) -> sevsnp.VerifiedSnp:
    return sevsnp.verify_report(report or b.report(), b.certs(), b.vendor.roots(), NOW)


@pytest.mark.parametrize(
    ("product", "version"),
    [
        ("milan", 2),
        ("milan", 3),
        ("genoa", 3),
        ("genoa", 4),
        ("genoa", 5),
        ("turin", 3),
        ("turin", 5),
    ],
)
def test_versions_and_products_verify(product: str, version: int) -> None:
    b = SnpBuilder(product, version=version)
    v = verify(b)
    assert v.product == product and v.report.version == version
    if version >= 3:
        assert v.report.product == product and v.report.cpuid_family in (0x19, 0x1A)
    if version >= 5:
        assert (v.report.launch_mit_vector, v.report.current_mit_vector) == (3, 7)
    else:
        assert v.report.launch_mit_vector is None


def test_turin_tcb_layout() -> None:
    b = SnpBuilder("turin", version=3)
    tcb = verify(b).report.reported_tcb
    assert tcb.turin and tcb.components() == {
        "fmc": 1,
        "bootloader": 4,
        "tee": 0,
        "snp": 22,
        "microcode": 72,
    }


def test_vlek_signed_report_verifies() -> None:
    b = SnpBuilder("genoa", version=3, signing_key="vlek")
    v = verify(b)
    assert v.report.signing_key == "vlek"


def test_vlek_report_with_a_vcek_certificate_is_refused() -> None:
    b = SnpBuilder("genoa", version=3, signing_key="vlek")
    vcek = SnpBuilder("genoa", version=3)
    with pytest.raises(
        ChainError, match="signed by the VLEK, but the first certificate is 'SEV-VCEK'"
    ):
        sevsnp.verify_report(b.report(), vcek.certs(), b.vendor.roots(), NOW)


def test_vcek_tcb_must_match_reported_tcb() -> None:
    certified = sevsnp.TcbVersion.build(bootloader=3, tee=0, snp=9, microcode=115)
    b = SnpBuilder("milan", cert_tcb=certified)
    with pytest.raises(ChainError, match="snp certified 9, reported 8"):
        verify(b)


def test_turin_fmc_must_match() -> None:
    certified = sevsnp.TcbVersion.build(bootloader=4, tee=0, snp=22, microcode=72, fmc=2)
    b = SnpBuilder("turin", version=3, cert_tcb=certified)
    with pytest.raises(ChainError, match="fmc certified 2, reported 1"):
        verify(b)


def test_vcek_hwid_must_match_chip_id() -> None:
    b = SnpBuilder("milan", hwid=bytes(64))
    with pytest.raises(ChainError, match="hwID does not match"):
        verify(b)


def test_genoa_report_under_a_milan_chain_is_refused() -> None:
    genoa = SnpBuilder("genoa", version=3)
    milan = amd("milan")
    # a Genoa-CPUID report signed by a VCEK that the (test) Milan root issued
    b = SnpBuilder("milan", version=3)
    r = b.unsigned(bytes(64))
    r[0x188:0x18B] = bytes([0x19, 0x11, 0x01])
    with pytest.raises(
        ChainError, match="CPUID names Genoa, but its certificates chain to the Milan"
    ):
        sevsnp.verify_report(b.sign(r), b.certs(), milan.roots(), NOW)
    assert genoa.vendor is not milan


def test_v2_report_under_turin_root_is_refused() -> None:
    b = SnpBuilder("turin", version=3)
    r = b.unsigned(bytes(64))
    r[0x00] = 2
    r[0x188:0x18B] = bytes(3)
    with pytest.raises(MalformedError):
        verify(b, b.sign(r))


def test_unknown_cpuid_is_malformed() -> None:
    b = SnpBuilder("milan", version=3)
    r = b.unsigned(bytes(64))
    r[0x188] = 0x17
    with pytest.raises(MalformedError, match="family 0x17"):
        verify(b, b.sign(r))


def test_masked_chip_id_must_be_zero() -> None:
    b = SnpBuilder("milan")
    r = b.unsigned(bytes(64))
    r[0x48] |= 0x02
    with pytest.raises(MalformedError, match="masked"):
        verify(b, b.sign(r))


def test_signing_key_none_is_refused() -> None:
    b = SnpBuilder("milan")
    r = b.unsigned(bytes(64))
    r[0x48] = 7 << 2
    with pytest.raises(Exception, match="signed with key 'none'"):
        verify(b, b.sign(r))
