"""Certificate loading and chain verification to pinned roots, at an injected time.

Chains are short and fixed by vendors (AMD: VCEK → ASK → ARK; Intel: PCK → CA → Root; NVIDIA: five
certificates), so verification is direct: each certificate must be issued (name and signature) by
the next, every certificate valid at `now`, and the last one must equal a pinned root byte for byte.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.utils import CryptographyDeprecationWarning

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


def _check_time(cert: x509.Certificate, now: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise ChainError(
            f"{what} certificate {cert.subject.rfc4514_string()} is not valid at {now.isoformat()}"
        )


def verify_chain(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: datetime, what: str
) -> x509.Certificate:
    """`chain` is leaf first and ends with a root (or the certificate a root issued). Returns the
    pinned root the chain ends at; raises ChainError naming the failing link."""
    if not chain:
        raise ChainError(f"{what}: empty certificate chain")
    if len(chain) > limits.CERTS_PER_CHAIN_MAX:
        raise LimitError(f"{what}: chain longer than {limits.CERTS_PER_CHAIN_MAX}")
    for i, cert in enumerate(chain):
        _check_time(cert, now, what)
        if i + 1 < len(chain):
            _issued_by(cert, chain[i + 1], f"{what} link {i}→{i + 1}")
    last = chain[-1]
    for root in roots:
        if last == root:
            _issued_by(root, root, f"{what} root self-signature")
            return root
    for root in roots:
        if last.issuer == root.subject:
            _check_time(root, now, what)
            _issued_by(last, root, f"{what} link to root")
            return root
    raise ChainError(f"{what}: chain ends at {last.subject.rfc4514_string()}, not an accepted root")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ChainError(
            f"{what}: {cert.subject.rfc4514_string()} is not issued by "
            f"{issuer.subject.rfc4514_string()} ({exc.__class__.__name__})"
        ) from exc
