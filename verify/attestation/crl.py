"""Certificate revocation from CRLs (RFC 5280 §5, §6.3) and OCSP responses (verify.attestation.ocsp),
for every vendor chain.

Which certificates must be checked: every certificate of a verified chain, except the pinned root,
that names a CRL distribution point (its issuer publishes revocation that way): AMD's ASK/ASVK (on
the ARK's CRL), Intel's PCK (Platform/Processor CA CRL) and its CA (Root CA CRL), NVIDIA's device
intermediates (NVIDIA's CRLs). A certificate without a distribution point has no CRL to consult
(AMD VCEKs, NVIDIA's per-device FMC/BROM certificates) and is not reported as unchecked.

A CRL counts only when: its issuer name equals the certificate's issuer's subject; the issuer is a
CA allowed to sign CRLs (keyUsage cRLSign); its signature verifies with the issuer's key; it is
current (thisUpdate ≤ now ≤ nextUpdate); it is a complete CRL (no delta indicator, no critical
extension we do not understand). A CRL that fails any of these is set aside with the reason, so a
missing, stale or forged CRL is a named gap ("skip"), never a pass; a listed serial is a failure.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509 import ocsp as ocsp_x509
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID

from ccgw.verify import limits
from ccgw.verify.attestation import ocsp
from ccgw.verify.errors import LimitError, MalformedError

_UNDERSTOOD_CRL_EXTENSIONS = frozenset(
    {
        ExtensionOID.CRL_NUMBER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }
)


def load_crl(data: bytes, what: str) -> x509.CertificateRevocationList:
    """A CRL in DER or PEM, bounded."""
    if len(data) > limits.COLLATERAL_ITEM_BYTES_MAX:
        raise LimitError(f"{what} CRL exceeds {limits.COLLATERAL_ITEM_BYTES_MAX} bytes")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
        _ = (crl.issuer.rfc4514_string(), crl.last_update_utc, crl.next_update_utc, crl.extensions)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedError(f"{what} CRL does not parse") from exc
    return crl


def _cn(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()


def crl_problem(
    crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: datetime
) -> str | None:
    """Why `crl` cannot vouch for certificates `issuer` signed (None: it can)."""
    if crl.issuer != issuer.subject:
        return "issued by another CA"
    try:
        ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return f"{_cn(issuer.subject)} is not a CA allowed to sign CRLs"
    if not bc.ca or not ku.crl_sign:
        return f"{_cn(issuer.subject)} is not a CA allowed to sign CRLs"
    for ext in crl.extensions:
        if ext.oid == ExtensionOID.DELTA_CRL_INDICATOR:
            return "a delta CRL (a complete CRL is needed)"
        if ext.critical and ext.oid not in _UNDERSTOOD_CRL_EXTENSIONS:
            return f"carries an unknown critical extension {ext.oid.dotted_string}"
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        return f"signature does not verify with {_cn(issuer.subject)}'s key"
    nxt = crl.next_update_utc
    if crl.last_update_utc > now:
        return f"issued in the future ({crl.last_update_utc.isoformat()})"
    if nxt is None or now > nxt:
        return f"expired ({nxt.isoformat() if nxt else 'no nextUpdate'})"
    return None


@dataclass(frozen=True)
class CertStatus:
    """Revocation status of one certificate: "good", "revoked", "unchecked" (with why)."""

    subject: str
    status: str
    why: str = ""


@dataclass(frozen=True)
class ChainRevocation:
    certs: tuple[CertStatus, ...]

    @property
    def revoked(self) -> tuple[CertStatus, ...]:
        return tuple(c for c in self.certs if c.status == "revoked")

    @property
    def unchecked(self) -> tuple[CertStatus, ...]:
        return tuple(c for c in self.certs if c.status == "unchecked")

    def describe(self) -> str:
        if not self.certs:
            return "no certificate in the chain publishes a CRL"
        return "; ".join(
            f"{c.subject}: {c.status}{f' ({c.why})' if c.why else ''}" for c in self.certs
        )


def _publishes_crl(cert: x509.Certificate) -> bool:
    try:
        cert.extensions.get_extension_for_oid(ExtensionOID.CRL_DISTRIBUTION_POINTS)
    except x509.ExtensionNotFound:
        return False
    return True


def _publishes_ocsp(cert: x509.Certificate) -> bool:
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return False
    return any(d.access_method == AuthorityInformationAccessOID.OCSP for d in aia.value)


def check_chain(
    chain: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    now: datetime,
    responses: Sequence[ocsp_x509.OCSPResponse] = (),
) -> ChainRevocation:
    """`chain` is a verified path, leaf first, ending with the pinned root (not itself checked).
    A usable OCSP response for a certificate (verify.attestation.ocsp) decides its status — also for
    certificates that publish no CRL, such as one GPU's device certificate; otherwise its issuer's
    CRL does. A certificate that names neither a CRL nor an OCSP responder, and has no response
    supplied, has nothing to consult and is not listed."""
    out: list[CertStatus] = []
    for cert, issuer in itertools.pairwise(chain):
        name = _cn(cert.subject)
        answer, ocsp_reasons = ocsp.status_for(cert, issuer, responses, now)
        if answer is not None and answer.status != "unknown":
            out.append(CertStatus(name, answer.status, answer.detail))
            continue
        if not _publishes_crl(cert):
            if answer is not None or ocsp_reasons or _publishes_ocsp(cert):
                why = answer.detail if answer else "; ".join(ocsp_reasons)
                out.append(CertStatus(name, "unchecked", why or "no OCSP response supplied"))
            continue
        reasons: list[str] = [*ocsp_reasons]
        usable = None
        for crl in crls:
            problem = crl_problem(crl, issuer, now)
            if problem is None:
                usable = crl
                break
            if problem != "issued by another CA":
                reasons.append(f"CRL from {_cn(crl.issuer)} {problem}")
        if usable is None:
            why = "; ".join(reasons) or f"no CRL from {_cn(issuer.subject)} supplied"
            out.append(CertStatus(name, "unchecked", why))
        elif usable.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            out.append(CertStatus(name, "revoked", f"serial {cert.serial_number:x}"))
        else:
            out.append(CertStatus(name, "good"))
    return ChainRevocation(tuple(out))
