"""Development TLS material: a CA and leaf certificates for the gateway and for clients, all
ECDSA P-256, with SANs for localhost, 127.0.0.1, ::1 and any names given. For development and
tests only: a production gateway's certificate comes from the operator's own CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
VALIDITY_DAYS = 365
FILES = ("ca.crt", "ca.key", "gateway.crt", "gateway.key", "client.crt", "client.key")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    out: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(out)


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    names: Sequence[str] = (),
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, signer = issuer if issuer else (_name(subject), key)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        b = b.add_extension(_san(names), critical=False)
        if usage is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return b.sign(signer, hashes.SHA256())


def _write(path: Path, data: bytes, secret: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def make_dev_certs(out: Path, names: Sequence[str] = (), force: bool = False) -> list[Path]:
    """Write ca.crt/key, gateway.crt/key (server, SANs: defaults + names) and client.crt/key
    (client auth) into `out`; refuses to overwrite unless `force`."""
    existing = [out / f for f in FILES if (out / f).exists()]
    if existing and not force:
        raise FileExistsError(existing[0])
    out.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("ccgw development CA", ca_key, None)
    leaves = {
        "gateway": (x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, (*DEFAULT_NAMES, *names)),
        "client": (ExtendedKeyUsageOID.CLIENT_AUTH, ("ccgw-client",)),
    }
    _write(out / "ca.crt", ca.public_bytes(pem), False)
    _write(out / "ca.key", _key_pem(ca_key), True)
    for stem, (usage, sans) in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"ccgw {stem}", key, (ca.subject, ca_key), names=sans, usage=usage)
        _write(out / f"{stem}.crt", cert.public_bytes(pem) + ca.public_bytes(pem), False)
        _write(out / f"{stem}.key", _key_pem(key), True)
    return [out / f for f in FILES]


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
