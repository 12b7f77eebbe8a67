"""AMD SEV-SNP attestation reports (SEV-SNP Firmware ABI spec, "ATTESTATION_REPORT" table).

parse_report: 1184 bytes → SnpReport for report versions 1–5, every field range and every reserved
range checked, no trust decision. Version 1 (firmware before ABI 1.51, still seen in 2022 on Azure)
defines only the author-key bit of 0x48 (so the VCEK signs) and nothing from 0x1E0 to the
signature: those must be zero, and its committed/launch TCB and firmware versions read as zero.
Version 3 adds the CPUID family/model/stepping at 0x188 (which
name the product, and so the TCB_VERSION layout); version 5 adds the launch and current mitigation
vectors at 0x1F8/0x200.

verify_report, in order:
 1. parse;
 2. chain: VCEK → ASK → ARK (or VLEK → ASVK → ARK) to a pinned root the policy accepts, at `now`
    (hand-coded path validation: AMD signs with RSA-PSS; every issuer must be a CA); the ASK and
    ASVK ship with the packaged roots, so a bundle may carry the VCEK/VLEK alone;
 3. product: the report's CPUID (v3+) names the same product as the root (a Genoa report under a
    Milan chain is refused), and Turin's TCB layout is used only under the Turin root;
 4. certificate claims: the VCEK/VLEK's TCB extensions equal REPORTED_TCB (the key is derived from
    that TCB), and a VCEK's hwID equals CHIP_ID (unless the guest masked its chip id);
 5. signature: ECDSA P-384/SHA-384 over 0x000–0x29F, r and s little-endian (72 bytes each at
    0x2A0), with the key the report's SIGNER_INFO names (VCEK or VLEK; "none" is refused).
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
from cryptography.x509.oid import NameOID

from ccgw.verify.attestation import der
from ccgw.verify.attestation.roots import Root
from ccgw.verify.attestation.x509chain import load_der, verify_chain
from ccgw.verify.errors import ChainError, MalformedError, SignatureError, VerifyError

REPORT_BYTES = 0x4A0
SIGNED_BYTES = 0x2A0
SIG_COMPONENT_BYTES = 72
SIG_ALGO_ECDSA_P384_SHA384 = 1
SUPPORTED_VERSIONS = (1, 2, 3, 4, 5)

# Guest policy bits (SEV-SNP ABI, "GUEST_POLICY"); bits 26–63 are reserved.
POLICY_SMT = 1 << 16
POLICY_RESERVED_MBO = 1 << 17
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20
POLICY_RESERVED_FROM_BIT = 26

# PLATFORM_INFO bits 0–7 are defined (SMT_EN, TSME_EN, ECC_EN, RAPL_DIS, CIPHERTEXT_HIDING_EN,
# ALIAS_CHECK_COMPLETE, reserved, TIO_EN); the rest are reserved.
PLATFORM_INFO_SMT_EN = 1 << 0
PLATFORM_INFO_TSME_EN = 1 << 1
PLATFORM_INFO_RESERVED_FROM_BIT = 8

# SIGNER_INFO: bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 2–4 SIGNING_KEY, 5–31 reserved.
SIGNER_AUTHOR_KEY_EN = 1 << 0
SIGNER_MASK_CHIP_KEY = 1 << 1
SIGNING_KEYS = {0: "vcek", 1: "vlek", 7: "none"}

# AMD's X.509 extension arc for VCEK/VLEK (AMD "Versioned Chip Endorsement Key" spec).
AMD_OID = "1.3.6.1.4.1.3704.1"
OID_PRODUCT_NAME = x509.ObjectIdentifier(f"{AMD_OID}.2")
OID_BL_SPL = x509.ObjectIdentifier(f"{AMD_OID}.3.1")
OID_TEE_SPL = x509.ObjectIdentifier(f"{AMD_OID}.3.2")
OID_SNP_SPL = x509.ObjectIdentifier(f"{AMD_OID}.3.3")
OID_UCODE_SPL = x509.ObjectIdentifier(f"{AMD_OID}.3.8")
OID_FMC_SPL = x509.ObjectIdentifier(f"{AMD_OID}.3.9")
OID_HWID = x509.ObjectIdentifier(f"{AMD_OID}.4")

PRODUCTS = ("milan", "genoa", "turin")


def product_from_cpuid(family: int, model: int) -> str:
    """AMD product line from the report's CPUID family/model (v3+ reports)."""
    if family == 0x19 and model <= 0x0F:
        return "milan"
    if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
        return "genoa"
    if family == 0x1A and model <= 0x1F:
        return "turin"
    raise MalformedError(
        f"SEV-SNP report CPUID family 0x{family:X} model 0x{model:X} is no known product"
    )


@dataclass(frozen=True)
class TcbVersion:
    """TCB_VERSION. Milan/Genoa: byte 0 bootloader, 1 TEE, 2–5 reserved, 6 SNP, 7 microcode.
    Turin: byte 0 FMC, 1 bootloader, 2 TEE, 3 SNP, 4–6 reserved, 7 microcode."""

    raw: int
    turin: bool = False

    def _byte(self, i: int) -> int:
        return (self.raw >> (8 * i)) & 0xFF

    @property
    def fmc(self) -> int | None:
        return self._byte(0) if self.turin else None

    @property
    def bootloader(self) -> int:
        return self._byte(1 if self.turin else 0)

    @property
    def tee(self) -> int:
        return self._byte(2 if self.turin else 1)

    @property
    def snp(self) -> int:
        return self._byte(3 if self.turin else 6)

    @property
    def microcode(self) -> int:
        return self._byte(7)

    @property
    def reserved_bytes_zero(self) -> bool:
        reserved = (4, 5, 6) if self.turin else (2, 3, 4, 5)
        return not any(self._byte(i) for i in reserved)

    def components(self) -> dict[str, int]:
        out = {
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        }
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out

    @classmethod
    def build(
        cls, *, bootloader: int, tee: int, snp: int, microcode: int, fmc: int | None = None
    ) -> TcbVersion:
        """Encode components (Turin layout when `fmc` is given)."""
        if fmc is None:
            raw = bootloader | tee << 8 | snp << 48 | microcode << 56
            return cls(raw)
        return cls(fmc | bootloader << 8 | tee << 16 | snp << 24 | microcode << 56, turin=True)


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
    # Version 3+: CPUID leaf 1 family/model/stepping; None before.
    cpuid_family: int | None = None
    cpuid_model: int | None = None
    cpuid_stepping: int | None = None
    # Version 5+: mitigation vectors; None before.
    launch_mit_vector: int | None = None
    current_mit_vector: int | None = None
    # From CPUID (v3+); None for v2 reports, whose product only the chain names.
    product: str | None = None

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
    def single_socket_required(self) -> bool:
        return bool(self.policy & POLICY_SINGLE_SOCKET)

    @property
    def abi_version(self) -> tuple[int, int]:
        """Minimum firmware ABI (major, minor) the guest policy requires."""
        return (self.policy >> 8) & 0xFF, self.policy & 0xFF

    @property
    def smt_enabled(self) -> bool:
        return bool(self.platform_info & PLATFORM_INFO_SMT_EN)

    @property
    def signing_key(self) -> str:
        """SIGNING_KEY field of signer_info: "vcek", "vlek" or "none"."""
        return SIGNING_KEYS.get((self.signer_info >> 2) & 0x7, "reserved")

    @property
    def chip_id_masked(self) -> bool:
        return bool(self.signer_info & SIGNER_MASK_CHIP_KEY)


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
    if policy >> POLICY_RESERVED_FROM_BIT:
        raise MalformedError("SEV-SNP guest policy has reserved bits set")
    vmpl = u32(0x30)
    if vmpl > 3:
        raise MalformedError(f"SEV-SNP VMPL {vmpl} out of range")
    platform_info = u64(0x40)
    if platform_info >> PLATFORM_INFO_RESERVED_FROM_BIT:
        raise MalformedError("SEV-SNP platform_info has reserved bits set")
    signer_info = u32(0x48)
    if signer_info >> 5:
        raise MalformedError("SEV-SNP signer_info has reserved bits set")
    if (signer_info >> 2) & 0x7 not in SIGNING_KEYS:
        raise MalformedError("SEV-SNP signer_info names a reserved signing key")
    if version == 1:
        if signer_info >> 1:
            raise MalformedError("SEV-SNP version 1 report sets bits of 0x48 it does not define")
        _zero(data, 0x1E0, SIGNED_BYTES, "reserved 0x1E0 of a version 1 report")
    chip_id = data[0x1A0:0x1E0]
    if signer_info & SIGNER_MASK_CHIP_KEY and any(chip_id):
        raise MalformedError("SEV-SNP chip id is masked by signer_info but not zero")
    _zero(data, 0x4C, 0x50, "reserved 0x4C")
    family = model = stepping = None
    product = None
    if version < 3:
        _zero(data, 0x188, 0x1A0, "reserved 0x188")
    else:
        family, model, stepping = data[0x188], data[0x189], data[0x18A]
        product = product_from_cpuid(family, model)
        _zero(data, 0x18B, 0x1A0, "reserved 0x18B")
    _zero(data, 0x1EB, 0x1EC, "reserved 0x1EB")
    _zero(data, 0x1EF, 0x1F0, "reserved 0x1EF")
    launch_mit = current_mit = None
    if version >= 5:
        launch_mit, current_mit = u64(0x1F8), u64(0x200)
    _zero(data, 0x1F8 if version < 5 else 0x208, SIGNED_BYTES, "reserved before the signature")
    r = data[0x2A0 : 0x2A0 + SIG_COMPONENT_BYTES]
    s = data[0x2A0 + SIG_COMPONENT_BYTES : 0x2A0 + 2 * SIG_COMPONENT_BYTES]
    _zero(data, 0x2A0 + 2 * SIG_COMPONENT_BYTES, REPORT_BYTES, "signature padding")
    turin = product == "turin"
    tcbs = {off: TcbVersion(u64(off), turin) for off in (0x38, 0x180, 0x1E0, 0x1F0)}
    for off, tcb in tcbs.items():
        if not tcb.reserved_bytes_zero:
            raise MalformedError(f"SEV-SNP TCB_VERSION at 0x{off:X} has reserved bytes set")
    return SnpReport(
        raw=bytes(data),
        version=version,
        guest_svn=u32(0x04),
        policy=policy,
        family_id=data[0x10:0x20],
        image_id=data[0x20:0x30],
        vmpl=vmpl,
        signature_algo=sig_algo,
        current_tcb=tcbs[0x38],
        platform_info=platform_info,
        signer_info=signer_info,
        report_data=data[0x50:0x90],
        measurement=data[0x90:0xC0],
        host_data=data[0xC0:0xE0],
        id_key_digest=data[0xE0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        report_id_ma=data[0x160:0x180],
        reported_tcb=tcbs[0x180],
        chip_id=chip_id,
        committed_tcb=tcbs[0x1E0],
        current_version=(data[0x1EA], data[0x1E9], data[0x1E8]),
        committed_version=(data[0x1EE], data[0x1ED], data[0x1EC]),
        launch_tcb=tcbs[0x1F0],
        signature_r=r,
        signature_s=s,
        cpuid_family=family,
        cpuid_model=model,
        cpuid_stepping=stepping,
        launch_mit_vector=launch_mit,
        current_mit_vector=current_mit,
        product=product,
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
        raise SignatureError(
            f"SEV-SNP report signature does not verify with the {report.signing_key.upper()}"
        ) from exc


def _ext_value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    if not isinstance(ext.value, x509.UnrecognizedExtension):
        raise MalformedError(f"SEV-SNP certificate extension {oid.dotted_string} has an odd type")
    return ext.value.value


def _ext_int(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> int | None:
    raw = _ext_value(cert, oid)
    if raw is None:
        return None
    return der.integer(der.read_one(raw, f"extension {oid.dotted_string}"), oid.dotted_string)


def cert_tcb(cert: x509.Certificate, turin: bool) -> dict[str, int | None]:
    """The TCB components a VCEK/VLEK certifies (its SPL extensions)."""
    out = {
        "bootloader": _ext_int(cert, OID_BL_SPL),
        "tee": _ext_int(cert, OID_TEE_SPL),
        "snp": _ext_int(cert, OID_SNP_SPL),
        "microcode": _ext_int(cert, OID_UCODE_SPL),
    }
    if turin:
        out["fmc"] = _ext_int(cert, OID_FMC_SPL)
    return out


def cert_hwid(cert: x509.Certificate) -> bytes | None:
    raw = _ext_value(cert, OID_HWID)
    if raw is None:
        return None
    # KDS encodes hwID as an OCTET STRING (Milan/Genoa 64 bytes, Turin 8 bytes); accept the bare
    # value too, as early VCEKs did.
    try:
        tlv = der.read_one(raw, "hwID")
    except MalformedError:
        return raw
    return tlv.value if tlv.tag == der.TAG_OCTET_STRING else raw


def check_cert_claims(report: SnpReport, cert: x509.Certificate, turin: bool) -> None:
    """Step 5: the signing certificate's TCB equals REPORTED_TCB; a VCEK's hwID is CHIP_ID."""
    reported = TcbVersion(report.reported_tcb.raw, turin)
    wrong = []
    for name, certified in cert_tcb(cert, turin).items():
        have = reported.components()[name]
        if certified is None:
            wrong.append(f"{name} missing from the certificate")
        elif certified != have:
            wrong.append(f"{name} certified {certified}, reported {have}")
    if wrong:
        raise ChainError(
            f"SEV-SNP {report.signing_key.upper()} TCB does not match the report's reported_tcb: "
            + ", ".join(wrong)
        )
    if report.signing_key != "vcek" or report.chip_id_masked:
        return
    hwid = cert_hwid(cert)
    if hwid is None:
        raise ChainError("SEV-SNP VCEK carries no hwID extension")
    chip = report.chip_id
    matches = hwid == chip or (len(hwid) == 8 and chip[:8] == hwid and not any(chip[8:]))
    if not matches:
        raise ChainError("SEV-SNP VCEK hwID does not match the report's chip_id")


def _root_product(root: Root) -> str | None:
    for p in PRODUCTS:
        if root.name == f"amd-{p}":
            return p
    return None  # simulated: Milan/Genoa layout, any CPUID


def _check_signer_cert(report: SnpReport, cert: x509.Certificate) -> None:
    if report.signing_key not in ("vcek", "vlek"):
        raise ChainError(f"SEV-SNP report is signed with key {report.signing_key!r}")
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    want = f"SEV-{report.signing_key.upper()}"
    if cns and cns[0] != want:
        raise ChainError(
            f"SEV-SNP report says it is signed by the {report.signing_key.upper()}, "
            f"but the first certificate is {cns[0]!r}"
        )


@dataclass(frozen=True)
class VerifiedSnp:
    report: SnpReport
    vcek: x509.Certificate  # the VCEK or VLEK that signed the report
    root: Root
    product: str | None  # "milan" | "genoa" | "turin"; None under the simulated root
    chain: tuple[x509.Certificate, ...] = ()  # the verified path, VCEK/VLEK first, root last


def _complete(certs: list[x509.Certificate], root: Root) -> list[x509.Certificate]:
    """The bundle's chain, or the signer followed by the root's shipped intermediate that issued it
    (the ASK for a VCEK, the ASVK for a VLEK)."""
    if len(certs) > 1:
        return certs
    issuer = next((c for c in root.intermediates if c.subject == certs[0].issuer), None)
    return [*certs, issuer] if issuer is not None else certs


def verify_report(
    report_bytes: bytes, cert_ders: list[bytes], roots: list[Root], now: datetime
) -> VerifiedSnp:
    """Parse; check the chain (VCEK/VLEK first; the ASK/ASVK and ARK may be omitted when the root
    ships them), the product, the certificate's claims and the report signature, in that order
    (MalformedError, then ChainError, then SignatureError). Returns the verified report (with TCB
    values in the layout of the product the chain proves), the root and the path."""
    report = parse_report(report_bytes)
    if not cert_ders:
        raise MalformedError("SEV-SNP evidence carries no VCEK/VLEK certificate")
    certs = [load_der(d, f"SEV-SNP cert {i}") for i, d in enumerate(cert_ders)]
    signer = certs[0]
    _check_signer_cert(report, signer)
    if not roots:
        raise ChainError("SEV-SNP: the policy accepts no root for this platform")
    failures: list[str] = []
    for root in roots:
        chain = _complete(certs, root)
        try:
            verify_chain(chain, [root.cert], now, "SEV-SNP")
        except VerifyError as exc:
            failures.append(f"{root.name}: {exc}")
            continue
        product = _root_product(root)
        if report.product is not None and product is not None and report.product != product:
            raise ChainError(
                f"SEV-SNP report CPUID names {report.product.title()}, "
                f"but its certificates chain to the {product.title()} root"
            )
        if product == "turin" and report.product is None:
            raise ChainError("SEV-SNP report under the Turin root must be version 3 or later")
        check_cert_claims(report, signer, turin=product == "turin")
        verify_signature(report, signer)
        path = tuple(chain) if chain[-1] == root.cert else (*chain, root.cert)
        return VerifiedSnp(report=report, vcek=signer, root=root, product=product, chain=path)
    raise ChainError("SEV-SNP chain verifies to no accepted root: " + " | ".join(failures))
