"""The simulated vendor (ARK, ASK) and the simulated SEV-SNP platform (VCEK, report signing)."""

from __future__ import annotations

import datetime as dt
import os
import struct
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from ccgw.enclave.tee import CpuEvidence
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify.attestation import sevsnp

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_AMD_OID = "1.3.6.1.4.1.3704.1"
_VALIDITY = dt.timedelta(days=3650)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ccgw SIMULATED TEE - NOT A REAL VENDOR"),
        ]
    )


def _der_int(v: int) -> bytes:
    body = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


class SimulatedVendor:
    """The simulated AMD: an ARK (self-signed) and an ASK, RSA-3072 with RSA-PSS/SHA-384."""

    def __init__(
        self,
        ark_key: rsa.RSAPrivateKey,
        ask_key: rsa.RSAPrivateKey,
        ark: x509.Certificate,
        ask: x509.Certificate,
    ) -> None:
        self._ark_key, self._ask_key, self.ark, self.ask = ark_key, ask_key, ark, ask

    @classmethod
    def generate(cls, now: dt.datetime | None = None) -> SimulatedVendor:
        now = now or dt.datetime.now(dt.UTC)
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
        ark_name, ask_name = _name("ARK-Simulated"), _name("SEV-Simulated")
        ark = cls._cert(ark_name, ark_name, ark_key.public_key(), ark_key, now, ca=True)
        ask = cls._cert(ask_name, ark_name, ask_key.public_key(), ark_key, now, ca=True)
        return cls(ark_key, ask_key, ark, ask)

    @staticmethod
    def _cert(
        subject: x509.Name,
        issuer: x509.Name,
        public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        signer: rsa.RSAPrivateKey,
        now: dt.datetime,
        ca: bool,
        extensions: list[x509.ExtensionType] = (),  # type: ignore[assignment]
    ) -> x509.Certificate:
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=not ca,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=ca,
                    crl_sign=ca,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        )
        for ext in extensions:
            b = b.add_extension(ext, critical=False)
        return b.sign(signer, hashes.SHA384(), rsa_padding=_PSS)

    def root_pem(self) -> bytes:
        """ASK then ARK, PEM: what verifiers are given with --allow-simulated-tee."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.ask, self.ark))

    def issue_vcek(
        self,
        key: ec.EllipticCurvePrivateKey,
        chip_id: bytes,
        tcb: sevsnp.TcbVersion,
        now: dt.datetime,
    ) -> x509.Certificate:
        exts: list[x509.ExtensionType] = [
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(f"{_AMD_OID}.3.1"), _der_int(tcb.bootloader)
            ),
            x509.UnrecognizedExtension(x509.ObjectIdentifier(f"{_AMD_OID}.3.2"), _der_int(tcb.tee)),
            x509.UnrecognizedExtension(x509.ObjectIdentifier(f"{_AMD_OID}.3.3"), _der_int(tcb.snp)),
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(f"{_AMD_OID}.3.8"), _der_int(tcb.microcode)
            ),
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(f"{_AMD_OID}.4"), bytes([0x04, len(chip_id)]) + chip_id
            ),
        ]
        return self._cert(
            _name("SEV-VCEK"), self.ask.subject, key.public_key(), self._ask_key, now, False, exts
        )

    # The simulated vendor's keys are development material, stored only where the operator says.
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, key in (("ark.key", self._ark_key), ("ask.key", self._ask_key)):
            path = directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
        (directory / "ark.pem").write_bytes(self.ark.public_bytes(serialization.Encoding.PEM))
        (directory / "ask.pem").write_bytes(self.ask.public_bytes(serialization.Encoding.PEM))
        (directory / "root.pem").write_bytes(self.root_pem())

    @classmethod
    def load(cls, directory: Path) -> SimulatedVendor:
        keys = []
        for name in ("ark.key", "ask.key"):
            k = serialization.load_pem_private_key((directory / name).read_bytes(), None)
            if not isinstance(k, rsa.RSAPrivateKey):
                raise ValueError(f"{name} is not an RSA key")
            keys.append(k)
        ark = x509.load_pem_x509_certificate((directory / "ark.pem").read_bytes())
        ask = x509.load_pem_x509_certificate((directory / "ask.pem").read_bytes())
        return cls(keys[0], keys[1], ark, ask)


# The launch measurement a simulated worker reports unless told otherwise (what a development
# release lists: `ccgw release build --simulated-worker`).
SIMULATED_MEASUREMENT = bytes(48)


class SimulatedSnpTee:
    """One simulated SEV-SNP platform: its own chip id and VCEK, a fixed launch measurement."""

    name = "simulated-sev-snp"

    def __init__(
        self,
        vendor: SimulatedVendor,
        *,
        measurement: bytes = SIMULATED_MEASUREMENT,
        debug: bool = False,
        tcb: sevsnp.TcbVersion | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        if len(measurement) != 48:
            raise ValueError("measurement must be 48 bytes")
        self.measurement = measurement
        self.debug = debug
        self.chip_id = os.urandom(64)
        self.tcb = tcb or sevsnp.TcbVersion((3) | (0 << 8) | (8 << 48) | (115 << 56))
        self._vcek_key = ec.generate_private_key(ec.SECP384R1())
        self.vcek = vendor.issue_vcek(
            self._vcek_key, self.chip_id, self.tcb, now or dt.datetime.now(dt.UTC)
        )
        self._chain = tuple(
            c.public_bytes(serialization.Encoding.DER) for c in (self.vcek, vendor.ask, vendor.ark)
        )

    def attest(self, report_data: bytes) -> CpuEvidence:
        if len(report_data) != 64:
            raise ValueError("report_data must be 64 bytes")
        r = bytearray(sevsnp.REPORT_BYTES)
        policy = (
            sevsnp.POLICY_RESERVED_MBO
            | sevsnp.POLICY_SMT
            | (sevsnp.POLICY_DEBUG if self.debug else 0)
        )
        struct.pack_into("<IIQ", r, 0x00, 2, 1, policy)
        struct.pack_into("<II", r, 0x30, 0, sevsnp.SIG_ALGO_ECDSA_P384_SHA384)
        struct.pack_into("<QQ", r, 0x38, self.tcb.raw, 0)
        r[0x50:0x90] = report_data
        r[0x90:0xC0] = self.measurement
        r[0x140:0x160] = os.urandom(32)
        struct.pack_into("<Q", r, 0x180, self.tcb.raw)
        r[0x1A0:0x1E0] = self.chip_id
        struct.pack_into("<Q", r, 0x1E0, self.tcb.raw)
        r[0x1E8:0x1EB] = bytes([21, 55, 1])  # build, minor, major
        r[0x1EC:0x1EF] = bytes([21, 55, 1])
        struct.pack_into("<Q", r, 0x1F0, self.tcb.raw)
        sig = self._vcek_key.sign(bytes(r[: sevsnp.SIGNED_BYTES]), ec.ECDSA(hashes.SHA384()))
        rr, ss = decode_dss_signature(sig)
        r[0x2A0 : 0x2A0 + 72] = rr.to_bytes(72, "little")
        r[0x2A0 + 72 : 0x2A0 + 144] = ss.to_bytes(72, "little")
        return CpuEvidence(platform=pb.SEV_SNP, report=bytes(r), certs=self._chain)
