"""OCSP responses as revocation collateral (RFC 6960): a GPU's own device certificate (no CRL) can
be revoked; a response counts only when it names the certificate, is signed by its issuer or a
delegated OCSP responder, and is current; anything else is a named gap, never a pass."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ccgw.enclave.evidence_bundle import collect_bundle
from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import collateral_pb2 as cpb
from ccgw.verify.attestation import crl as crlmod
from ccgw.verify.attestation.bundle import verify_bundle
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.report import Status
from ccgw.verify.attestation.supplied import Collateral, load_collateral_dir
from ccgw.verify.errors import VerifyError
from tests.support.evidence_builders import NOW, GpuStub, SnpBuilder, nvidia_root, nvidia_root_store

DAY = dt.timedelta(days=1)


def response(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    signer_key: ec.EllipticCurvePrivateKey,
    *,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    this_update: dt.datetime = NOW - DAY,
    next_update: dt.datetime | None = NOW + DAY,
    responder: x509.Certificate | None = None,
    algo: hashes.HashAlgorithm | None = None,
) -> bytes:
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=cert,
        issuer=issuer,
        algorithm=algo or hashes.SHA1(),
        cert_status=status,
        this_update=this_update,
        next_update=next_update,
        revocation_time=NOW - 2 * DAY if status is ocsp.OCSPCertStatus.REVOKED else None,
        revocation_reason=None,
    )
    if responder is not None:
        b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, responder).certificates([responder])
    else:
        b = b.responder_id(ocsp.OCSPResponderEncoding.NAME, issuer)
    return b.sign(signer_key, hashes.SHA384()).public_bytes(serialization.Encoding.DER)


def delegate(
    issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, *, eku: bool = True
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP384R1())
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "OCSP responder")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 10 * DAY)
        .not_valid_after(NOW + 10 * DAY)
    )
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False)
    return b.sign(issuer_key, hashes.SHA384()), key


@pytest.fixture(scope="module")
def gpu() -> GpuStub:
    return GpuStub()


def status(gpu: GpuStub, *raw: bytes) -> crlmod.ChainRevocation:
    _, root = nvidia_root()
    col = Collateral(ocsp_responses=raw)
    return crlmod.check_chain([gpu.leaf, root], (), NOW, col.parsed_ocsp[0])


def test_good_and_revoked_from_the_issuer(gpu: GpuStub) -> None:
    key, root = nvidia_root()
    good = status(gpu, response(gpu.leaf, root, key))
    assert [c.status for c in good.certs] == ["good"]
    bad = status(gpu, response(gpu.leaf, root, key, status=ocsp.OCSPCertStatus.REVOKED))
    assert [c.status for c in bad.certs] == ["revoked"] and "OCSP" in bad.certs[0].why
    unknown = status(gpu, response(gpu.leaf, root, key, status=ocsp.OCSPCertStatus.UNKNOWN))
    assert [c.status for c in unknown.certs] == ["unchecked"]


def test_sha256_cert_ids_and_delegated_responders(gpu: GpuStub) -> None:
    key, root = nvidia_root()
    assert status(gpu, response(gpu.leaf, root, key, algo=hashes.SHA256())).certs[0].status == (
        "good"
    )
    cert, dkey = delegate(root, key)
    r = response(gpu.leaf, root, dkey, responder=cert, status=ocsp.OCSPCertStatus.REVOKED)
    assert status(gpu, r).certs[0].status == "revoked"


@pytest.mark.parametrize(
    ("make", "why"),
    [
        ("expired", "expired"),
        ("future", "future"),
        ("no-next-update", "no nextUpdate"),
        ("forged", "does not verify"),
        ("delegate-without-eku", "OCSPSigning"),
        ("delegate-of-another-ca", "not issued by"),
    ],
)
def test_unusable_responses_are_gaps_with_reasons(gpu: GpuStub, make: str, why: str) -> None:
    key, root = nvidia_root()
    raw = {
        "expired": lambda: response(
            gpu.leaf, root, key, this_update=NOW - 3 * DAY, next_update=NOW - DAY
        ),
        "future": lambda: response(gpu.leaf, root, key, this_update=NOW + DAY),
        "no-next-update": lambda: response(gpu.leaf, root, key, next_update=None),
        "forged": lambda: _flip_last(response(gpu.leaf, root, key)),
        "delegate-without-eku": lambda: _no_eku(gpu, root, key),
        "delegate-of-another-ca": lambda: _foreign_delegate(gpu, root),
    }[make]()
    res = status(gpu, raw)
    assert [c.status for c in res.certs] == ["unchecked"]
    assert why in res.certs[0].why


def _flip_last(der: bytes) -> bytes:
    """The signature BIT STRING ends the DER when no certificates follow it."""
    return der[:-1] + bytes([der[-1] ^ 1])


def _no_eku(gpu: GpuStub, root: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bytes:
    cert, dkey = delegate(root, key, eku=False)
    return response(gpu.leaf, root, dkey, responder=cert)


def _foreign_delegate(gpu: GpuStub, root: x509.Certificate) -> bytes:
    other_key = ec.generate_private_key(ec.SECP384R1())
    other_ca = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other CA")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other CA")]))
        .public_key(other_key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .sign(other_key, hashes.SHA384())
    )
    cert, dkey = delegate(other_ca, other_key)
    return response(gpu.leaf, root, dkey, responder=cert)


def test_a_response_for_another_certificate_is_ignored(gpu: GpuStub) -> None:
    key, root = nvidia_root()
    other = GpuStub()
    res = status(gpu, response(other.leaf, root, key, status=ocsp.OCSPCertStatus.REVOKED))
    assert res.certs == ()  # names no other cert of this chain; the leaf publishes nothing


def _bundle(cpu: SnpBuilder, gpu: GpuStub):  # type: ignore[no-untyped-def]
    import time

    return collect_bundle(
        cpu=cpu,
        gpu=gpu,
        keys=Keyring().public,
        nonce=os.urandom(32),
        models={"m": b"\x01" * 32},
        issued_at_ms=int(time.time() * 1000),
    )


def test_a_revoked_gpu_is_refused_through_verify_bundle(gpu: GpuStub) -> None:
    key, root = nvidia_root()
    cpu = SnpBuilder("genoa", version=3)
    roots = nvidia_root_store(cpu.vendor.root_store())
    now = dt.datetime.now(dt.UTC)
    good = Collateral(ocsp_responses=(response(gpu.leaf, root, key, next_update=now + DAY),))
    w = verify_bundle(_bundle(cpu, gpu), Policy(require_gpu=True), roots, now, collateral=good)
    assert w.report is not None and w.report.check("gpu.revocation").status is Status.PASS
    revoked = Collateral(
        ocsp_responses=(
            response(
                gpu.leaf, root, key, status=ocsp.OCSPCertStatus.REVOKED, next_update=now + DAY
            ),
        )
    )
    with pytest.raises(VerifyError) as info:
        verify_bundle(_bundle(cpu, gpu), Policy(require_gpu=True), roots, now, collateral=revoked)
    assert info.value.report is not None
    assert info.value.report.check("gpu.revocation").status is Status.FAIL


def test_collateral_dir_wire_form_and_garbage(tmp_path, gpu: GpuStub) -> None:  # type: ignore[no-untyped-def]
    key, root = nvidia_root()
    raw = response(gpu.leaf, root, key)
    (tmp_path / "gpu0.ocsp").write_bytes(raw)
    col = load_collateral_dir(tmp_path)
    assert col.ocsp_responses == (raw,) and not col.empty
    back = Collateral.from_proto(cpb.Collateral.FromString(col.to_proto().SerializeToString()))
    assert back.ocsp_responses == (raw,)
    junk = Collateral(ocsp_responses=(b"\x30\x03garbage",))
    assert junk.parsed_ocsp[0] == () and "not a DER OCSP response" in junk.parsed_ocsp[1][0]
