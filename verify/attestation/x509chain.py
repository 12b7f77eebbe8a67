"""Certificate loading and chain verification to pinned roots, at an injected time.

Two paths, one set of rules (RFC 5280 §6.1 as it applies to vendor chains):
- `verify_chain_webpki`: `cryptography.x509.verification` builds and checks the path (ECDSA chains
  of Intel — PCK, TCB signing — and NVIDIA GPU devices). Its CA profile requires every issuer to be
  a CA (basicConstraints cA=TRUE, keyUsage keyCertSign) and respects path lengths; the end-entity
  profile is relaxed to "any extensions", because vendor leaves carry no web-PKI names.
- `verify_chain`: hand code, only where that library cannot go: AMD's RSA-PSS chains (VCEK/VLEK →
  ASK/ASVK → ARK, whose PSS parameters the web-PKI profile forbids) and NVIDIA's RIM signing chain
  (its CA encodes a pre-2050 date as GeneralizedTime, which that library refuses). Chains are leaf
  first and ordered: each certificate is issued (name and signature) by the next, every issuer is a
  CA (basicConstraints cA=TRUE, keyUsage present with keyCertSign, its pathLenConstraint respected),
  every certificate is valid at `now`, and the chain ends at, or is issued by, a pinned root.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import verification as xv

from ccgw.verify import limits
from ccgw.verify.errors import ChainError, LimitError, MalformedError


def _eager(cert: x509.Certificate, what: str) -> x509.Certificate:
    """`cryptography` parses some fields lazily: touch every one we use now, so a corrupt
    certificate is refused here as MalformedError, not later as a stray ValueError."""
    try:
        _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
        _ = (cert.extensions, cert.public_key(), cert.signature_hash_algorithm)
        _ = (cert.subject.rfc4514_string(), cert.issuer.rfc4514_string())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedError(
            f"{what} certificate does not parse ({exc.__class__.__name__})"
        ) from exc
    return cert


def load_der(data: bytes, what: str) -> x509.Certificate:
    if len(data) > limits.CERT_BYTES_MAX:
        raise LimitError(f"{what} certificate exceeds {limits.CERT_BYTES_MAX} bytes")
    # AMD's KDS issued VCEKs whose serial number is zero; RFC 5280 forbids that and `cryptography`
    # warns. We accept it deliberately (the signature, not the serial, carries trust) and keep the
    # warning from leaking into callers.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return _eager(x509.load_der_x509_certificate(data), what)
        except ValueError as exc:
            raise MalformedError(f"{what} certificate is not valid DER") from exc


def load_pem_chain(data: bytes, what: str) -> list[x509.Certificate]:
    if len(data) > limits.CERT_BYTES_MAX * limits.CERTS_PER_CHAIN_MAX:
        raise LimitError(f"{what} certificate chain too large")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise MalformedError(f"{what} certificate chain is not valid PEM") from exc
    if len(certs) > limits.CERTS_PER_CHAIN_MAX:
        raise LimitError(
            f"{what} chain has {len(certs)} certificates; limit {limits.CERTS_PER_CHAIN_MAX}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return [_eager(c, f"{what} #{i}") for i, c in enumerate(certs)]


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _check_time(cert: x509.Certificate, now: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ChainError(f"{what} certificate {_name(cert)} is not valid at {now.isoformat()}")


def check_issuer_is_ca(issuer: x509.Certificate, below: int, what: str) -> None:
    """RFC 5280 §6.1.4 (k), (l), (n): `issuer` may sign certificates — basicConstraints cA=TRUE,
    keyUsage with keyCertSign — and `below` intermediate CAs under it respect its path length."""
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise ChainError(
            f"{what}: {_name(issuer)} is not a CA (basicConstraints cA is not TRUE) "
            "and may not issue certificates"
        )
    try:
        ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is None or not ku.key_cert_sign:
        raise ChainError(f"{what}: {_name(issuer)} lacks keyUsage keyCertSign")
    if bc.path_length is not None and below > bc.path_length:
        raise ChainError(
            f"{what}: {_name(issuer)} allows {bc.path_length} intermediate CA(s) below it; "
            f"the chain has {below}"
        )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate, below: int, what: str) -> None:
    check_issuer_is_ca(issuer, below, what)
    if cert.issuer != issuer.subject:
        raise ChainError(f"{what}: {_name(cert)} names another issuer than {_name(issuer)}")
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise ChainError(
            f"{what}: {_name(cert)} is not issued by {_name(issuer)} ({exc.__class__.__name__})"
        ) from exc


def verify_chain(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: datetime, what: str
) -> x509.Certificate:
    """Hand-coded path validation (see the module doc). `chain` is leaf first and ends with a root
    or the certificate a root issued. Returns the pinned root; raises ChainError naming the link."""
    if not chain:
        raise ChainError(f"{what}: empty certificate chain")
    if len(chain) > limits.CERTS_PER_CHAIN_MAX:
        raise LimitError(f"{what}: chain longer than {limits.CERTS_PER_CHAIN_MAX}")
    for i, cert in enumerate(chain):
        _check_time(cert, now, what)
        if i + 1 < len(chain):
            _issued_by(cert, chain[i + 1], i, f"{what} link {i}→{i + 1}")
    last = chain[-1]
    for root in roots:
        if last == root:
            _issued_by(root, root, max(0, len(chain) - 2), f"{what} root self-signature")
            return root
    for root in roots:
        if last.issuer == root.subject:
            _check_time(root, now, what)
            _issued_by(last, root, len(chain) - 1, f"{what} link to root")
            return root
    raise ChainError(f"{what}: chain ends at {_name(last)}, not an accepted root")


def verify_chain_webpki(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
    what: str,
) -> x509.Certificate:
    """Path building and validation by `cryptography.x509.verification` (RFC 5280 with its CA
    profile; any end-entity extensions). Returns the pinned root the path ends at."""
    if not roots:
        raise ChainError(f"{what}: no accepted root")
    if len(intermediates) + 1 > limits.CERTS_PER_CHAIN_MAX:
        raise LimitError(f"{what}: chain longer than {limits.CERTS_PER_CHAIN_MAX}")
    try:
        leaf_ca = leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        leaf_ca = False
    if leaf_ca:
        raise ChainError(
            f"{what}: the signing certificate {_name(leaf)} is a CA, not an end entity"
        )
    pool = [c for c in intermediates if c not in roots]
    verifier = (
        xv.PolicyBuilder()
        .store(xv.Store(list(roots)))
        .time(now)
        .max_chain_depth(limits.CERTS_PER_CHAIN_MAX)
        .extension_policies(
            ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=xv.ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        built = verifier.verify(leaf, pool)
    except xv.VerificationError as exc:
        raise ChainError(
            f"{what}: certificate chain does not verify to a pinned root: {exc}"
        ) from exc
    return built.chain[-1]


def issuer_path(
    chain: Sequence[x509.Certificate], root: x509.Certificate
) -> tuple[x509.Certificate, ...]:
    """After a successful verification: the leaf, each issuer by name up to `root`, and the root —
    the path revocation is checked along (extra certificates in the pool are left out)."""
    out = [chain[0]]
    while out[-1].issuer != root.subject and len(out) < len(chain):
        nxt = next((c for c in chain[1:] if c.subject == out[-1].issuer and c not in out), None)
        if nxt is None:
            break
        out.append(nxt)
    return (*out, root)
