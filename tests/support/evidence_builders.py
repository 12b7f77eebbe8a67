"""Evidence built from the specifications, signed by test vendors generated here (never by a real
vendor's key): SEV-SNP reports of any version/product/signing key, and NVIDIA SPDM GPU reports.
Used where no real sample exists (Turin, v3/v5 reports, VLEK, GPU splicing) and to reach the
validate layer with a binding we control."""

from __future__ import annotations

import datetime as dt
import functools
import os
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from ccgw.enclave.tee import CpuEvidence
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify.attestation import sevsnp
from ccgw.verify.attestation.roots import Root, RootStore

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
VALID_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)  # test vendors' certificates: 2020 – 2036
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
AMD = sevsnp.AMD_OID


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ccgw TEST VENDOR"),
        ]
    )


def _cert(
    subject: str,
    issuer: str,
    public: object,
    signer: object,
    *,
    ca: bool,
    exts: list[x509.ExtensionType] | None = None,
    pss: bool = True,
    issuer_key: object | None = None,
    cdp: str | None = None,
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALID_FROM)
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(key_usage(ca), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)  # type: ignore[arg-type]
    )
    if issuer_key is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key),  # type: ignore[arg-type]
            critical=False,
        )
    for e in exts or []:
        b = b.add_extension(e, critical=False)
    if cdp is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(cdp)], None, None, None)
        b = b.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if pss:
        return b.sign(signer, hashes.SHA384(), rsa_padding=_PSS)  # type: ignore[arg-type]
    return b.sign(signer, hashes.SHA384())  # type: ignore[arg-type]


def make_crl(
    issuer: x509.Certificate,
    key: object,
    revoked: list[int],
    this_update: dt.datetime,
    next_update: dt.datetime,
    *,
    pss: bool = False,
) -> bytes:
    b = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
    )
    for serial in revoked:
        b = b.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(this_update)
            .build()
        )
    padding_ = _PSS if pss else None
    crl = b.sign(key, hashes.SHA384(), rsa_padding=padding_)  # type: ignore[arg-type]
    return crl.public_bytes(serialization.Encoding.DER)


def key_usage(ca: bool) -> x509.KeyUsage:
    """keyCertSign + cRLSign for a CA, digitalSignature for an end entity."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _der_int(v: int) -> bytes:
    body = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _ext(oid: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value)


class AmdVendor:
    """An ARK/ASK pair standing in for one AMD product (RSA-2048 for speed; AMD's are 4096)."""

    def __init__(self, product: str, ask_cn: str = "SEV-Test") -> None:
        self.product, self.ask_cn = product, ask_cn
        self.ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ark = _cert("ARK-Test", "ARK-Test", self.ark_key.public_key(), self.ark_key, ca=True)
        self.ask = _cert(
            ask_cn, "ARK-Test", self.ask_key.public_key(), self.ark_key, ca=True, cdp="test:crl"
        )

    def crl(
        self,
        revoked: list[int] = (),  # type: ignore[assignment]
        *,
        this_update: dt.datetime = VALID_FROM,
        next_update: dt.datetime = NOW + dt.timedelta(days=30),
    ) -> bytes:
        """A CRL signed by the ARK (RSA-PSS, as AMD signs), listing `revoked` serials."""
        return make_crl(self.ark, self.ark_key, revoked, this_update, next_update, pss=True)

    def root_store(self) -> RootStore:
        name = f"amd-{self.product}"
        return RootStore({name: Root(name=name, cert=self.ark, intermediates=(self.ask,))})

    def roots(self) -> list[Root]:
        return list(self.root_store().roots.values())

    def issue(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        cn: str = "SEV-VCEK",
        tcb: sevsnp.TcbVersion,
        hwid: bytes | None,
    ) -> x509.Certificate:
        exts = [
            _ext(f"{AMD}.3.1", _der_int(tcb.bootloader)),
            _ext(f"{AMD}.3.2", _der_int(tcb.tee)),
            _ext(f"{AMD}.3.3", _der_int(tcb.snp)),
            _ext(f"{AMD}.3.8", _der_int(tcb.microcode)),
        ]
        if tcb.fmc is not None:
            exts.append(_ext(f"{AMD}.3.9", _der_int(tcb.fmc)))
        if hwid is not None:
            exts.append(_ext(f"{AMD}.4", bytes([0x04, len(hwid)]) + hwid))
        return _cert(cn, self.ask_cn, key.public_key(), self.ask_key, ca=False, exts=exts)


@functools.cache
def amd(product: str) -> AmdVendor:
    return AmdVendor(product)


CPUID = {"milan": (0x19, 0x01, 0x01), "genoa": (0x19, 0x11, 0x01), "turin": (0x1A, 0x02, 0x00)}


class SnpBuilder:
    """One test SEV-SNP platform: builds and signs reports in the ABI layout."""

    def __init__(
        self,
        product: str = "milan",
        *,
        version: int = 2,
        signing_key: str = "vcek",
        tcb: sevsnp.TcbVersion | None = None,
        cert_tcb: sevsnp.TcbVersion | None = None,
        chip_id: bytes | None = None,
        hwid: bytes | None = None,
    ) -> None:
        self.vendor = amd(product)
        self.product, self.version, self.signing_key = product, version, signing_key
        turin = product == "turin"
        self.tcb = tcb or (
            sevsnp.TcbVersion.build(bootloader=4, tee=0, snp=22, microcode=72, fmc=1)
            if turin
            else sevsnp.TcbVersion.build(bootloader=3, tee=0, snp=8, microcode=115)
        )
        self.chip_id = (
            chip_id
            if chip_id is not None
            else (os.urandom(8) + bytes(56) if turin else os.urandom(64))
        )
        self.key = ec.generate_private_key(ec.SECP384R1())
        if hwid is None:
            hwid = self.chip_id[:8] if turin else self.chip_id
        self.cert = self.vendor.issue(
            self.key,
            cn=f"SEV-{signing_key.upper()}",
            tcb=cert_tcb or self.tcb,
            hwid=hwid if signing_key == "vcek" else None,
        )
        self.measurement = os.urandom(48)
        self.policy = sevsnp.POLICY_RESERVED_MBO | sevsnp.POLICY_SMT
        self.platform_info = sevsnp.PLATFORM_INFO_SMT_EN
        self.vmpl = 0
        self.guest_svn = 1
        self.host_data = bytes(32)

    def unsigned(self, report_data: bytes) -> bytearray:
        r = bytearray(sevsnp.REPORT_BYTES)
        struct.pack_into("<IIQ", r, 0x00, self.version, self.guest_svn, self.policy)
        struct.pack_into("<II", r, 0x30, self.vmpl, sevsnp.SIG_ALGO_ECDSA_P384_SHA384)
        struct.pack_into("<QQ", r, 0x38, self.tcb.raw, self.platform_info)
        signer = {"vcek": 0, "vlek": 1}[self.signing_key] << 2
        struct.pack_into("<I", r, 0x48, signer)
        r[0x50:0x90] = report_data
        r[0x90:0xC0] = self.measurement
        r[0xC0:0xE0] = self.host_data
        r[0x140:0x160] = os.urandom(32)
        r[0x160:0x180] = b"\xff" * 32
        struct.pack_into("<Q", r, 0x180, self.tcb.raw)
        if self.version >= 3:
            r[0x188:0x18B] = bytes(CPUID[self.product])
        r[0x1A0:0x1E0] = self.chip_id
        struct.pack_into("<Q", r, 0x1E0, self.tcb.raw)
        r[0x1E8:0x1EB] = bytes([10, 55, 1])
        r[0x1EC:0x1EF] = bytes([10, 55, 1])
        struct.pack_into("<Q", r, 0x1F0, self.tcb.raw)
        if self.version >= 5:
            struct.pack_into("<QQ", r, 0x1F8, 0x3, 0x7)
        return r

    def sign(self, r: bytearray) -> bytes:
        sig = self.key.sign(bytes(r[: sevsnp.SIGNED_BYTES]), ec.ECDSA(hashes.SHA384()))
        rr, ss = decode_dss_signature(sig)
        r[0x2A0 : 0x2A0 + 72] = rr.to_bytes(72, "little")
        r[0x2A0 + 72 : 0x2A0 + 144] = ss.to_bytes(72, "little")
        return bytes(r)

    def report(self, report_data: bytes = bytes(64)) -> bytes:
        return self.sign(self.unsigned(report_data))

    def certs(self) -> list[bytes]:
        return [self.cert.public_bytes(serialization.Encoding.DER)]

    # CpuTee
    @property
    def name(self) -> str:
        return "test-sev-snp"

    def attest(self, report_data: bytes) -> CpuEvidence:
        return CpuEvidence(
            platform=pb.SEV_SNP, report=self.report(report_data), certs=tuple(self.certs())
        )


def hcl_envelope(
    snp_report: bytes,
    claims: bytes,
    *,
    hash_type: int = 1,
    report_type: int = 2,
    version: int = 1,
    report_size: int | None = None,
    data_size: int | None = None,
    padding_bytes: int = 0,
) -> bytes:
    """Azure's paravisor envelope (verify/attestation/azure_hcl.py's layout) around a report."""
    hw = snp_report.ljust(1184, b"\0")
    size = 32 + 1184 + 20 + len(claims)
    header = b"HCLA" + struct.pack(
        "<IIII12x", version, size if report_size is None else report_size, 2, 0
    )
    req = struct.pack(
        "<5I",
        20 + len(claims) if data_size is None else data_size,
        1,
        report_type,
        hash_type,
        len(claims),
    )
    return header + hw + req + claims + bytes(padding_bytes)


def runtime_claims(user_data: bytes | None) -> bytes:
    """Runtime claims as Azure's paravisor writes them (keys, VM configuration, user-data)."""
    import json

    doc: dict[str, object] = {
        "keys": [{"kid": "HCLAkPub", "key_ops": ["sign"], "kty": "RSA", "e": "AQAB", "n": "x"}],
        "vm-configuration": {"secure-boot": True, "tpm-enabled": True, "console-enabled": False},
    }
    if user_data is not None:
        doc["user-data"] = user_data.hex().upper()
    return json.dumps(doc, separators=(",", ":")).encode()


class AzureHclTee:
    """An Azure SEV-SNP confidential VM as its guest sees it: the guest's 64 bytes go into the
    paravisor's runtime claims as user-data; the PSP signs a report whose REPORT_DATA is the
    SHA-256 of those claims (zero-padded); the guest reads the HCL envelope."""

    name = "test-azure-hcl"

    def __init__(self, snp: SnpBuilder) -> None:
        self.snp = snp

    def attest(self, report_data: bytes) -> CpuEvidence:
        import hashlib

        claims = runtime_claims(report_data)
        inner = self.snp.report(hashlib.sha256(claims).digest() + bytes(32))
        return CpuEvidence(
            platform=pb.SEV_SNP,
            report=hcl_envelope(inner, claims, padding_bytes=223),
            certs=tuple(self.snp.certs()),
        )


# ----------------------------------------------------------------------------------------------
# NVIDIA SPDM


@functools.cache
def nvidia_root() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    return key, _cert(
        "Test Device Identity CA",
        "Test Device Identity CA",
        key.public_key(),
        key,
        ca=True,
        pss=False,
        issuer_key=key.public_key(),
    )


def nvidia_root_store(base: RootStore | None = None) -> RootStore:
    base = base or RootStore({})
    root = Root(name="nvidia-device", cert=nvidia_root()[1])
    return RootStore({**base.roots, "nvidia-device": root})


def spdm_report(
    nonce: bytes,
    measurements: dict[int, bytes],
    key: ec.EllipticCurvePrivateKey,
    opaque: dict[int, bytes] | None = None,
) -> bytes:
    req = bytes([0x11, 0xE0, 0x01, 0xFF]) + nonce + b"\x00"
    record = b"".join(
        bytes([i, 0x01])
        + struct.pack("<H", 3 + len(v))
        + bytes([0x01])
        + struct.pack("<H", len(v))
        + v
        for i, v in sorted(measurements.items())
    )
    op = b"".join(struct.pack("<HH", t, len(v)) + v for t, v in (opaque or {}).items())
    resp = (
        bytes([0x11, 0x60, 0x00, 0x00, len(measurements)])
        + len(record).to_bytes(3, "little")
        + record
        + os.urandom(32)
        + struct.pack("<H", len(op))
        + op
    )
    body = req + resp
    r, s = decode_dss_signature(key.sign(body, ec.ECDSA(hashes.SHA384())))
    return body + r.to_bytes(48, "big") + s.to_bytes(48, "big")


class GpuStub:
    """A GpuAttester standing in for one H100 (test key, test root)."""

    def __init__(self, measurements: dict[int, bytes] | None = None) -> None:
        root_key, root = nvidia_root()
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.leaf = _cert(
            "Test GPU attestation",
            "Test Device Identity CA",
            self.key.public_key(),
            root_key,
            ca=False,
            pss=False,
            issuer_key=root_key.public_key(),
        )
        self.measurements = measurements or {i: os.urandom(48) for i in range(1, 9)}
        self.chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.leaf, root))

    def attest(self, nonce: bytes) -> list[pb.GpuEvidence]:
        opaque = {3: b"550.90.07\x00", 6: bytes([0x00, 0x9F, 0x00, 0x96, 0x01, 0, 0, 0])}
        rep = spdm_report(nonce, self.measurements, self.key, opaque)
        return [pb.GpuEvidence(index=0, arch="HOPPER", report=rep, cert_chain=self.chain)]
