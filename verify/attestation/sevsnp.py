"""AMD SEV-SNP attestation reports (SEV-SNP ABI spec, "ATTESTATION_REPORT" table).

parse_report: 1184 bytes → SnpReport, every size and reserved range checked, no trust decision.
verify_report: ECDSA P-384/SHA-384 signature over bytes 0x000–0x29F (r, s little-endian, 72 bytes
each at 0x2A0) with the VCEK/VLEK, and the VCEK → ASK → ARK chain to a pinned root.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from verify.attestation.roots import Root
from verify.attestation.x509chain import load_der, verify_chain
from verify.errors import ChainError, MalformedError, SignatureError, VerifyError

REPORT_BYTES = 0x4A0
SIGNED_BYTES = 0x2A0
SIG_COMPONENT_BYTES = 72
SIG_ALGO_ECDSA_P384_SHA384 = 1
SUPPORTED_VERSIONS = (2, 3, 4, 5)

# Guest policy bits (SEV-SNP ABI, "GUEST_POLICY").
POLICY_SMT = 1 << 16
POLICY_RESERVED_MBO = 1 << 17
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20


@dataclass(frozen=True)
class TcbVersion:
    """TCB_VERSION for Milan/Genoa layout: bl, tee, (4 reserved), snp, microcode."""

    raw: int

    @property
    def bootloader(self) -> int:
        return self.raw & 0xFF

    @property
    def tee(self) -> int:
        return (self.raw >> 8) & 0xFF

    @property
    def snp(self) -> int:
        return (self.raw >> 48) & 0xFF

    @property
    def microcode(self) -> int:
        return (self.raw >> 56) & 0xFF


@dataclass(frozen=True)
class SnpReport:
    raw: bytes
    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    chip_id: bytes
    committed_tcb: TcbVersion
    current_version: tuple[int, int, int]  # major, minor, build
    committed_version: tuple[int, int, int]
    launch_tcb: TcbVersion
    signature_r: bytes  # little-endian, as in the report
    signature_s: bytes

    @property
    def debug_allowed(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)

    @property
    def smt_allowed(self) -> bool:
        return bool(self.policy & POLICY_SMT)

    @property
    def migrate_ma_allowed(self) -> bool:
        return bool(self.policy & POLICY_MIGRATE_MA)

    @property
    def signing_key(self) -> str:
        """SIGNING_KEY field of signer_info: "vcek", "vlek" or "none"."""
        return {0: "vcek", 1: "vlek", 7: "none"}.get((self.signer_info >> 2) & 0x7, "reserved")


def parse_report(data: bytes) -> SnpReport:
    if len(data) != REPORT_BYTES:
        raise MalformedError(f"SEV-SNP report is {len(data)} bytes, expected {REPORT_BYTES}")

    def u32(off: int) -> int:
        return int(struct.unpack_from("<I", data, off)[0])

    def u64(off: int) -> int:
        return int(struct.unpack_from("<Q", data, off)[0])

    version = u32(0x00)
    if version not in SUPPORTED_VERSIONS:
        raise MalformedError(f"SEV-SNP report version {version} is not supported")
    sig_algo = u32(0x34)
    if sig_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise MalformedError(f"SEV-SNP signature algorithm {sig_algo} is not ECDSA P-384/SHA-384")
    policy = u64(0x08)
    if not policy & POLICY_RESERVED_MBO:
        raise MalformedError("SEV-SNP guest policy bit 17 (must be one) is zero")
    if policy >> 26:
        raise MalformedError("SEV-SNP guest policy has reserved bits set")
    vmpl = u32(0x30)
    if vmpl > 3:
        raise MalformedError(f"SEV-SNP VMPL {vmpl} out of range")
    _zero(data, 0x4C, 0x50, "reserved 0x4C")
    if version < 3:
        _zero(data, 0x188, 0x1A0, "reserved 0x188")
    else:
        _zero(data, 0x18B, 0x1A0, "reserved 0x18B")
    _zero(data, 0x1EB, 0x1EC, "reserved 0x1EB")
    _zero(data, 0x1EF, 0x1F0, "reserved 0x1EF")
    _zero(data, 0x1F8 if version < 5 else 0x208, SIGNED_BYTES, "reserved before the signature")
    r = data[0x2A0 : 0x2A0 + SIG_COMPONENT_BYTES]
    s = data[0x2A0 + SIG_COMPONENT_BYTES : 0x2A0 + 2 * SIG_COMPONENT_BYTES]
    _zero(data, 0x2A0 + 2 * SIG_COMPONENT_BYTES, REPORT_BYTES, "signature padding")
    return SnpReport(
        raw=bytes(data),
        version=version,
        guest_svn=u32(0x04),
        policy=policy,
        family_id=data[0x10:0x20],
        image_id=data[0x20:0x30],
        vmpl=vmpl,
        signature_algo=sig_algo,
        current_tcb=TcbVersion(u64(0x38)),
        platform_info=u64(0x40),
        signer_info=u32(0x48),
        report_data=data[0x50:0x90],
        measurement=data[0x90:0xC0],
        host_data=data[0xC0:0xE0],
        id_key_digest=data[0xE0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        report_id_ma=data[0x160:0x180],
        reported_tcb=TcbVersion(u64(0x180)),
        chip_id=data[0x1A0:0x1E0],
        committed_tcb=TcbVersion(u64(0x1E0)),
        current_version=(data[0x1EA], data[0x1E9], data[0x1E8]),
        committed_version=(data[0x1EE], data[0x1ED], data[0x1EC]),
        launch_tcb=TcbVersion(u64(0x1F0)),
        signature_r=r,
        signature_s=s,
    )


def _zero(data: bytes, start: int, end: int, what: str) -> None:
    if any(data[start:end]):
        raise MalformedError(f"SEV-SNP {what} (0x{start:X}–0x{end - 1:X}) is not zero")


def verify_signature(report: SnpReport, vcek: x509.Certificate) -> None:
    key = vcek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise SignatureError("SEV-SNP VCEK/VLEK key is not ECDSA P-384")
    r = int.from_bytes(report.signature_r, "little")
    s = int.from_bytes(report.signature_s, "little")
    try:
        key.verify(encode_dss_signature(r, s), report.raw[:SIGNED_BYTES], ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as exc:
        raise SignatureError("SEV-SNP report signature does not verify with the VCEK") from exc


@dataclass(frozen=True)
class VerifiedSnp:
    report: SnpReport
    vcek: x509.Certificate
    root: Root


def verify_report(
    report_bytes: bytes, cert_ders: list[bytes], roots: list[Root], now: datetime
) -> VerifiedSnp:
    """Parse, check the chain (VCEK first; ASK/ARK may be omitted when the root ships them) and
    the report signature. Returns the verified report and the root it chains to."""
    report = parse_report(report_bytes)
    if not cert_ders:
        raise MalformedError("SEV-SNP evidence carries no VCEK certificate")
    certs = [load_der(d, f"SEV-SNP cert {i}") for i, d in enumerate(cert_ders)]
    vcek = certs[0]
    failures: list[str] = []
    for root in roots:
        chain = certs if len(certs) > 1 else [*certs, *root.intermediates]
        try:
            verify_chain(chain, [root.cert], now, "SEV-SNP")
        except VerifyError as exc:
            failures.append(f"{root.name}: {exc}")
            continue
        verify_signature(report, vcek)
        return VerifiedSnp(report=report, vcek=vcek, root=root)
    if not roots:
        raise ChainError("SEV-SNP: the policy accepts no root for this platform")
    raise ChainError("SEV-SNP chain verifies to no accepted root: " + " | ".join(failures))
