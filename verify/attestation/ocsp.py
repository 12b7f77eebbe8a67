"""Certificate revocation from OCSP responses (RFC 6960), supplied as collateral — nothing is
fetched. NVIDIA answers revocation of its device certificates (down to one GPU's BROM / FMC
certificate, which publish no CRL) and of its RIM signers this way; a gateway or an auditor may
keep the responses and hand them out like CRLs.

A response counts for a certificate only when:
- it is a successful basic response with exactly one SingleResponse, whose CertID names this
  certificate (serial number, and the SHA-1/SHA-2 hash of its issuer's name and public key);
- it is signed by the issuer itself, or by a responder certificate included in the response that
  the issuer signed, that is valid now, and that carries the id-kp-OCSPSigning extended key usage
  (RFC 6960 §4.2.2.2);
- it is current: thisUpdate ≤ now (with the skew allowed for collateral) and a nextUpdate that has
  not passed (a response without nextUpdate promises nothing about now, so it is not current).
A response failing any of these is set aside with the reason: a gap, never a pass. "revoked" is a
failure; "unknown" leaves the certificate unchecked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from ccgw.verify import limits
from ccgw.verify.errors import LimitError, MalformedError

_CERT_ID_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def load_response(data: bytes, what: str) -> ocsp.OCSPResponse:
    if len(data) > limits.COLLATERAL_ITEM_BYTES_MAX:
        raise LimitError(f"{what} exceeds {limits.COLLATERAL_ITEM_BYTES_MAX} bytes")
    try:
        return ocsp.load_der_ocsp_response(data)
    except ValueError as exc:
        raise MalformedError(f"{what} is not a DER OCSP response") from exc


@dataclass(frozen=True)
class OcspStatus:
    status: str  # "good" | "revoked" | "unknown"
    detail: str = ""


def _verify_with(key: object, response: ocsp.OCSPResponse) -> None:
    sig, data = response.signature, response.tbs_response_bytes
    algo = response.signature_hash_algorithm
    if isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
        key.verify(sig, data, ec.ECDSA(algo))
    elif isinstance(key, rsa.RSAPublicKey) and algo is not None:
        key.verify(sig, data, padding.PKCS1v15(), algo)
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key.verify(sig, data)
    else:
        raise InvalidSignature("unsupported OCSP signature key")


def _names_responder(response: ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    if response.responder_name is not None:
        return response.responder_name == cert.subject
    # ResponderID byKey: SHA-1 of the subjectPublicKey BIT STRING (RFC 6960 §4.2.1), which is
    # RFC 5280's key identifier method 1.
    key_hash = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    return response.responder_key_hash == key_hash


def _signer_problem(
    response: ocsp.OCSPResponse, issuer: x509.Certificate, now: dt.datetime
) -> str | None:
    """None when the response is signed by `issuer` or a responder it delegated to."""
    try:
        if _names_responder(response, issuer):
            _verify_with(issuer.public_key(), response)
            return None
        for delegate in response.certificates:
            if not _names_responder(response, delegate):
                continue
            if delegate.issuer != issuer.subject:
                return "its responder certificate was not issued by the certificate's issuer"
            delegate.verify_directly_issued_by(issuer)
            if not delegate.not_valid_before_utc <= now <= delegate.not_valid_after_utc:
                return "its responder certificate is not valid now"
            try:
                eku = delegate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            except x509.ExtensionNotFound:
                return "its responder certificate lacks id-kp-OCSPSigning"
            if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
                return "its responder certificate lacks id-kp-OCSPSigning"
            _verify_with(delegate.public_key(), response)
            return None
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return "has a signature that does not verify"
    return "is signed by neither the issuer nor a responder it certified"


def _names_cert(
    response: ocsp.OCSPResponse, cert: x509.Certificate, issuer: x509.Certificate
) -> bool:
    algo = _CERT_ID_HASHES.get(response.hash_algorithm.name)
    if algo is None or response.serial_number != cert.serial_number:
        return False
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algo())
    req = builder.build()
    return (
        req.issuer_name_hash == response.issuer_name_hash
        and req.issuer_key_hash == response.issuer_key_hash
    )


def status_for(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    responses: Sequence[ocsp.OCSPResponse],
    now: dt.datetime,
    skew: dt.timedelta = dt.timedelta(minutes=5),
) -> tuple[OcspStatus | None, list[str]]:
    """The status the first usable response gives `cert`, or None, with why the others were not
    usable (only those that name this certificate)."""
    reasons: list[str] = []
    for r in responses:
        if r.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            continue
        try:
            singles = list(r.responses)
        except ValueError:
            continue
        if len(singles) != 1 or not _names_cert(r, cert, issuer):
            continue
        problem = _signer_problem(r, issuer, now)
        if problem is None:
            if r.this_update_utc > now + skew:
                problem = "is issued in the future"
            elif r.next_update_utc is None:
                problem = "has no nextUpdate (says nothing about now)"
            elif r.next_update_utc < now:
                problem = "has expired"
        if problem is not None:
            reasons.append(f"OCSP response {problem}")
            continue
        if r.certificate_status is ocsp.OCSPCertStatus.GOOD:
            return OcspStatus("good"), reasons
        if r.certificate_status is ocsp.OCSPCertStatus.REVOKED:
            when = r.revocation_time_utc
            return OcspStatus("revoked", f"OCSP: revoked {when:%Y-%m-%d}" if when else ""), reasons
        return OcspStatus("unknown", "OCSP responder does not know it"), reasons
    return None, reasons
