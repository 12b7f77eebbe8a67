"""The real Milan SEV-SNP report (go-sev-guest's attestation.bin + vcek.testcer) verifies to the
pinned Milan root; every single-field tamper fails with an error naming what failed."""

from __future__ import annotations

import datetime as dt
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning

from ccgw.verify.attestation import sevsnp
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.report import ReportBuilder, Status
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.attestation.validate import snp_checks
from ccgw.verify.errors import ChainError, MalformedError, SignatureError
from tests.support.evidence_builders import amd
from tests.vectors._paths import vectors_dir

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
AMD_ROOTS = frozenset({"amd-milan", "amd-genoa", "amd-turin"})


def load() -> tuple[bytes, bytes]:
    d = vectors_dir() / "sev-snp"
    return (d / "attestation.bin").read_bytes(), (d / "vcek.testcer").read_bytes()


def roots(names: frozenset[str] = AMD_ROOTS) -> list:  # type: ignore[type-arg]
    return RootStore.default().for_platform(names, "sev-snp")


def verify(
    report: bytes, certs: list[bytes], names: frozenset[str] = AMD_ROOTS
) -> sevsnp.VerifiedSnp:
    return sevsnp.verify_report(report, certs, roots(names), NOW)


def test_real_milan_report_verifies_to_the_milan_root() -> None:
    report, vcek = load()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the VCEK's zero serial is handled deliberately, silently
        v = verify(report, [vcek])
    assert v.root.name == "amd-milan" and v.product == "milan"
    r = v.report
    assert r.version == 2 and r.cpuid_family is None and r.launch_mit_vector is None
    assert r.reported_tcb.components() == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68}
    assert r.report_data[:5] == bytes([1, 2, 3, 4, 5])
    assert r.signing_key == "vcek" and r.debug_allowed and r.smt_enabled
    assert sevsnp.cert_hwid(v.vcek) == r.chip_id


def test_real_report_verifies_with_the_full_chain_too() -> None:
    report, vcek = load()
    d = vectors_dir() / "sev-snp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        ask, ark = x509.load_pem_x509_certificates((d / "ask_ark_milan.pem").read_bytes())
    der = [c.public_bytes(serialization.Encoding.DER) for c in (ask, ark)]
    assert verify(report, [vcek, *der]).root.name == "amd-milan"


@pytest.mark.parametrize("product", ["amd-genoa", "amd-turin"])
def test_wrong_product_chain_is_refused(product: str) -> None:
    report, vcek = load()
    with pytest.raises(ChainError, match="no accepted root"):
        verify(report, [vcek], frozenset({product}))


def test_wrong_product_intermediates_are_refused() -> None:
    report, vcek = load()
    d = vectors_dir() / "sev-snp"
    ask, ark = x509.load_pem_x509_certificates((d / "ask_ark_genoa.pem").read_bytes())
    der = [c.public_bytes(serialization.Encoding.DER) for c in (ask, ark)]
    with pytest.raises(ChainError, match="link 0→1"):
        verify(report, [vcek, *der])


def test_chain_out_of_order_is_refused() -> None:
    report, vcek = load()
    d = vectors_dir() / "sev-snp"
    ask, ark = x509.load_pem_x509_certificates((d / "ask_ark_milan.pem").read_bytes())
    der = [c.public_bytes(serialization.Encoding.DER) for c in (ark, ask)]
    with pytest.raises(ChainError, match=r"names another issuer|is not issued by"):
        verify(report, [vcek, *der])


def test_debug_guest_is_refused_by_the_default_policy() -> None:
    report, vcek = load()
    b = ReportBuilder(Policy().enforcement())
    snp_checks(b, verify(report, [vcek]), Policy())
    debug = b.build().check("cpu.debug")
    assert debug.status is Status.FAIL and debug.detail == ("guest policy allows debugging",)


def flip(data: bytes, offset: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize(
    ("field", "offset"),
    [
        ("report_data", 0x50),
        ("measurement", 0x90),
        ("host_data", 0xC0),
        ("guest_svn", 0x04),
        ("signature r", 0x2A0),
        ("signature s", 0x2A0 + 72),
    ],
)
def test_signed_field_tamper_fails_the_signature(field: str, offset: int) -> None:
    report, vcek = load()
    with pytest.raises(SignatureError, match="report signature does not verify with the VCEK"):
        verify(flip(report, offset), [vcek])


@pytest.mark.parametrize(
    ("field", "offset", "named"),
    [("chip_id", 0x1A0, "hwID does not match"), ("reported_tcb", 0x187, "TCB does not match")],
)
def test_certified_field_tamper_fails_the_certificate_claims(
    field: str, offset: int, named: str
) -> None:
    report, vcek = load()
    with pytest.raises(ChainError, match=named):
        verify(flip(report, offset), [vcek])


@pytest.mark.parametrize(
    ("offset", "named"),
    [
        (0x4C, "reserved 0x4C"),
        (0x190, "reserved 0x188"),
        (0x1EB, "reserved 0x1EB"),
        (0x250, "reserved before the signature"),
        (0x400, "signature padding"),
        (0x0C, "guest policy has reserved bits"),
        (0x34, "signature algorithm"),
        (0x01, "version 258 is not supported"),
        (0x4A, "signer_info has reserved bits"),
        (0x183, "TCB_VERSION at 0x180 has reserved bytes"),
    ],
)
def test_reserved_or_invalid_field_is_malformed(offset: int, named: str) -> None:
    report, vcek = load()
    with pytest.raises(MalformedError, match=named):
        verify(flip(report, offset), [vcek])


def test_truncated_report_is_malformed() -> None:
    report, vcek = load()
    with pytest.raises(MalformedError, match="1183 bytes"):
        verify(report[:-1], [vcek])


def test_tampered_vcek_certificate_is_refused() -> None:
    report, vcek = load()
    # a byte of the ASK's signature over the VCEK
    with pytest.raises(ChainError, match=r"SEV-VCEK.* is not issued by"):
        verify(report, [flip(vcek, len(vcek) - 20)])
    # a byte of the VCEK's public key: no longer a point on P-384
    with pytest.raises(MalformedError, match="SEV-SNP cert 0 certificate does not parse"):
        verify(report, [flip(vcek, vcek.index(bytes.fromhex("0448ec9f36")) + 10)])


def test_another_vcek_is_refused() -> None:
    report, _ = load()
    v = amd("milan")  # a VCEK from a test vendor: chains to no pinned root
    other = v.issue(ec.generate_private_key(ec.SECP384R1()), tcb=sevsnp.TcbVersion(0), hwid=None)
    with pytest.raises(ChainError):
        verify(report, [other.public_bytes(serialization.Encoding.DER)])
