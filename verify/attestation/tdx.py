"""Intel TDX quotes (Intel TDX DCAP Quote Generation Library and Quote Verification spec, Quote v4
and v5 with ECDSA-256 attestation keys).

parse_quote: bytes → TdxQuote (header, TD report body — TDX 1.0 or 1.5 layout —, ECDSA signature,
attestation key, and the QE certification data: QE report, its signature, QE auth data, PCK chain),
every size checked. Bytes after the signature data are covered by no signature; they are
ignored and counted (`trailing_bytes`). No trust decision.

verify_quote, in order (numbered as in the spec's verification flow):
 1. parse; attestation key type 2 (ECDSA-256-with-P-256) and TEE type 0x81 (TDX); Intel QE vendor;
 2. PCK chain (PCK → Platform/Processor CA → Intel SGX Root CA) verifies to a pinned root at `now`;
 3. the QE report's signature verifies with the PCK certificate's key;
 4. the QE report binds the attestation key: report_data = SHA-256(attestation key ‖ QE auth data)
    followed by 32 zero bytes;
 5. the quote's signature (over header ‖ body) verifies with the attestation key;
 6. the PCK certificate's Intel SGX extension is read: PPID, FMSPC, PCE-ID, the platform's TCB
    (16 SGX component SVNs, PCESVN, CPUSVN) — what TCB collateral is evaluated against.
TCB status needs Intel's TCB info and QE identity collateral (verify.attestation.collateral); the
quote alone cannot say whether the platform is up to date, and the result says so.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ccgw.verify import limits
from ccgw.verify.attestation import der
from ccgw.verify.attestation.roots import Root
from ccgw.verify.attestation.x509chain import issuer_path, load_pem_chain, verify_chain_webpki
from ccgw.verify.errors import ChainError, MalformedError, SignatureError, VerifyError

HEADER_BYTES = 48
TD10_BODY_BYTES = 584
TD15_BODY_BYTES = 648
QE_REPORT_BYTES = 384
ECDSA256_SIG_BYTES = 64
ECDSA256_KEY_BYTES = 64
ATT_KEY_ECDSA_P256 = 2
TEE_TYPE_TDX = 0x81
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
CERT_DATA_PCK_CHAIN = 5
CERT_DATA_QE_REPORT = 6
BODY_TYPE_TD10 = 2
BODY_TYPE_TD15 = 3
TD_ATTR_DEBUG = 1 << 0
TD_ATTR_SEPT_VE_DISABLE = 1 << 28

OID_SGX_EXTENSION = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
_SGX = "1.2.840.113741.1.13.1"


@dataclass(frozen=True)
class TdReport:
    tee_tcb_svn: bytes  # 16
    mr_seam: bytes  # 48
    mr_signer_seam: bytes  # 48
    seam_attributes: bytes  # 8
    td_attributes: int
    xfam: int
    mr_td: bytes  # 48
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes  # 64
    tee_tcb_svn2: bytes | None = None  # TDX 1.5 body only
    mr_service_td: bytes | None = None  # TDX 1.5 body only

    @property
    def debug(self) -> bool:
        return bool(self.td_attributes & TD_ATTR_DEBUG)


@dataclass(frozen=True)
class QeReport:
    """The SGX report body of the Quoting Enclave."""

    raw: bytes
    cpu_svn: bytes
    misc_select: int
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int
    isv_svn: int
    report_data: bytes


@dataclass(frozen=True)
class TdxQuote:
    raw: bytes  # the quote without trailing padding
    version: int
    att_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes
    body_type: int  # 2 = TDX 1.0 body, 3 = TDX 1.5 body
    body: TdReport
    signed: bytes  # header ‖ (v5: body type ‖ size ‖) body
    signature: bytes  # r ‖ s, big-endian
    attestation_key: bytes  # x ‖ y
    qe_report: QeReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes
    # Bytes after the signature data: covered by no signature and ignored (quote generators pad
    # to a buffer size; go-tdx-guest's sample even appends a note). Bounded by the size limit.
    trailing_bytes: int = 0


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.off = data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.off + n > len(self.data):
            raise MalformedError(f"TDX quote truncated in {what}")
        out = self.data[self.off : self.off + n]
        self.off += n
        return out

    def u16(self, what: str) -> int:
        return int(struct.unpack("<H", self.take(2, what))[0])

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])


def _parse_body(b: bytes, body_type: int) -> TdReport:
    r = _Reader(b)
    tee_tcb_svn = r.take(16, "TEE_TCB_SVN")
    mr_seam = r.take(48, "MRSEAM")
    mr_signer_seam = r.take(48, "MRSIGNERSEAM")
    seam_attributes = r.take(8, "SEAMATTRIBUTES")
    td_attributes = int.from_bytes(r.take(8, "TDATTRIBUTES"), "little")
    xfam = int.from_bytes(r.take(8, "XFAM"), "little")
    mr_td = r.take(48, "MRTD")
    mr_config_id = r.take(48, "MRCONFIGID")
    mr_owner = r.take(48, "MROWNER")
    mr_owner_config = r.take(48, "MROWNERCONFIG")
    rtmrs = (r.take(48, "RTMR0"), r.take(48, "RTMR1"), r.take(48, "RTMR2"), r.take(48, "RTMR3"))
    report_data = r.take(64, "REPORTDATA")
    svn2 = service = None
    if body_type == BODY_TYPE_TD15:
        svn2, service = r.take(16, "TEE_TCB_SVN2"), r.take(48, "MRSERVICETD")
    if any(seam_attributes):
        raise MalformedError("TDX SEAMATTRIBUTES must be zero")
    return TdReport(
        tee_tcb_svn,
        mr_seam,
        mr_signer_seam,
        seam_attributes,
        td_attributes,
        xfam,
        mr_td,
        mr_config_id,
        mr_owner,
        mr_owner_config,
        rtmrs,
        report_data,
        svn2,
        service,
    )


def _parse_qe_report(raw: bytes) -> QeReport:
    r = _Reader(raw)
    cpu_svn = r.take(16, "QE CPUSVN")
    misc_select = int.from_bytes(r.take(4, "QE MISCSELECT"), "little")
    r.take(28, "QE reserved")
    attributes = r.take(16, "QE ATTRIBUTES")
    mr_enclave = r.take(32, "QE MRENCLAVE")
    r.take(32, "QE reserved")
    mr_signer = r.take(32, "QE MRSIGNER")
    r.take(96, "QE reserved")
    isv_prod_id = r.u16("QE ISVPRODID")
    isv_svn = r.u16("QE ISVSVN")
    r.take(60, "QE reserved")
    report_data = r.take(64, "QE REPORTDATA")
    return QeReport(
        raw,
        cpu_svn,
        misc_select,
        attributes,
        mr_enclave,
        mr_signer,
        isv_prod_id,
        isv_svn,
        report_data,
    )


def parse_quote(data: bytes) -> TdxQuote:
    if len(data) > limits.CPU_REPORT_BYTES_MAX:
        raise MalformedError("TDX quote too large")
    r = _Reader(data)
    version = r.u16("header")
    att_key_type = r.u16("header")
    tee_type = r.u32("header")
    qe_svn = r.u16("header")
    pce_svn = r.u16("header")
    qe_vendor_id = r.take(16, "header")
    user_data = r.take(20, "header")
    if version not in (4, 5):
        raise MalformedError(f"TDX quote version {version} is not supported (4 or 5)")
    if tee_type != TEE_TYPE_TDX:
        raise MalformedError(f"TDX quote TEE type 0x{tee_type:X} is not TDX (0x81)")
    if att_key_type != ATT_KEY_ECDSA_P256:
        raise MalformedError(f"TDX attestation key type {att_key_type} is not ECDSA-256 (2)")
    if version == 4:
        body_type = BODY_TYPE_TD10
        body_bytes = r.take(TD10_BODY_BYTES, "TD report body")
    else:
        body_type = r.u16("body type")
        size = r.u32("body size")
        want = {BODY_TYPE_TD10: TD10_BODY_BYTES, BODY_TYPE_TD15: TD15_BODY_BYTES}.get(body_type)
        if want is None:
            raise MalformedError(f"TDX quote v5 body type {body_type} is not a TD report")
        if size != want:
            raise MalformedError(f"TDX quote v5 body size {size}, expected {want}")
        body_bytes = r.take(size, "TD report body")
    signed = data[: r.off]
    body = _parse_body(body_bytes, body_type)
    sig_len = r.u32("signature data length")
    sig_data = _Reader(r.take(sig_len, "signature data"))
    trailing = len(data) - r.off
    signature = sig_data.take(ECDSA256_SIG_BYTES, "quote signature")
    att_key = sig_data.take(ECDSA256_KEY_BYTES, "attestation key")
    cd_type = sig_data.u16("certification data type")
    cd = _Reader(sig_data.take(sig_data.u32("certification data size"), "certification data"))
    if sig_data.off != len(sig_data.data):
        raise MalformedError("TDX signature data has trailing bytes")
    if cd_type != CERT_DATA_QE_REPORT:
        raise MalformedError(
            f"TDX certification data type {cd_type} is not 6 (QE report certification data)"
        )
    qe_raw = cd.take(QE_REPORT_BYTES, "QE report")
    qe_sig = cd.take(ECDSA256_SIG_BYTES, "QE report signature")
    auth = cd.take(cd.u16("QE auth data size"), "QE auth data")
    inner_type = cd.u16("PCK certification data type")
    pck = cd.take(cd.u32("PCK certification data size"), "PCK certification data")
    if cd.off != len(cd.data):
        raise MalformedError("TDX QE certification data has trailing bytes")
    if inner_type != CERT_DATA_PCK_CHAIN:
        raise MalformedError(f"TDX PCK certification data type {inner_type} is not 5 (PEM chain)")
    return TdxQuote(
        raw=data[: r.off],
        version=version,
        att_key_type=att_key_type,
        tee_type=tee_type,
        qe_svn=qe_svn,
        pce_svn=pce_svn,
        qe_vendor_id=qe_vendor_id,
        user_data=user_data,
        body_type=body_type,
        body=body,
        signed=signed,
        signature=signature,
        attestation_key=att_key,
        qe_report=_parse_qe_report(qe_raw),
        qe_report_signature=qe_sig,
        qe_auth_data=auth,
        pck_chain_pem=pck.rstrip(b"\x00"),
        trailing_bytes=trailing,
    )


@dataclass(frozen=True)
class PckInfo:
    """What the PCK certificate's Intel SGX extension says about the platform."""

    ppid: bytes  # 16
    fmspc: bytes  # 6
    pce_id: bytes  # 2
    sgx_tcb_components: tuple[int, ...]  # 16 SVNs
    pce_svn: int
    cpu_svn: bytes  # 16


def pck_info(cert: x509.Certificate) -> PckInfo:
    try:
        ext = cert.extensions.get_extension_for_oid(OID_SGX_EXTENSION)
    except x509.ExtensionNotFound as exc:
        raise ChainError("TDX PCK certificate has no Intel SGX extension") from exc
    if not isinstance(ext.value, x509.UnrecognizedExtension):
        raise MalformedError("TDX PCK SGX extension has an odd type")
    top = der.read_one(ext.value.value, "PCK SGX extension")
    if top.tag != der.TAG_SEQUENCE:
        raise MalformedError("PCK SGX extension is not a SEQUENCE")
    fields: dict[bytes, der.Tlv] = {}
    for item in der.children(top.value, "PCK SGX extension"):
        parts = list(der.children(item.value, "PCK SGX extension item"))
        if item.tag != der.TAG_SEQUENCE or len(parts) != 2 or parts[0].tag != der.TAG_OID:
            raise MalformedError("PCK SGX extension item is not (OID, value)")
        fields[parts[0].value] = parts[1]

    def get(sub: str) -> der.Tlv:
        tlv = fields.get(der.oid_bytes(f"{_SGX}.{sub}"))
        if tlv is None:
            raise MalformedError(f"PCK SGX extension lacks {_SGX}.{sub}")
        return tlv

    tcb: dict[bytes, der.Tlv] = {}
    for item in der.children(get("2").value, "PCK TCB"):
        parts = list(der.children(item.value, "PCK TCB item"))
        if len(parts) != 2 or parts[0].tag != der.TAG_OID:
            raise MalformedError("PCK TCB item is not (OID, value)")
        tcb[parts[0].value] = parts[1]

    def tcb_get(i: int) -> der.Tlv:
        tlv = tcb.get(der.oid_bytes(f"{_SGX}.2.{i}"))
        if tlv is None:
            raise MalformedError(f"PCK TCB lacks component {i}")
        return tlv

    comps = tuple(der.integer(tcb_get(i), f"PCK TCB comp {i}") for i in range(1, 17))
    octets = {"1": 16, "4": 6, "3": 2}
    for sub, n in octets.items():
        if get(sub).tag != der.TAG_OCTET_STRING or len(get(sub).value) != n:
            raise MalformedError(f"PCK SGX extension {_SGX}.{sub} is not {n} octets")
    return PckInfo(
        ppid=get("1").value,
        fmspc=get("4").value,
        pce_id=get("3").value,
        sgx_tcb_components=comps,
        pce_svn=der.integer(tcb_get(17), "PCESVN"),
        cpu_svn=tcb_get(18).value,
    )


def _p256(raw_xy: bytes, what: str) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw_xy)
    except ValueError as exc:
        raise SignatureError(f"TDX {what} is not a P-256 point") from exc


def _verify_p256(key: ec.EllipticCurvePublicKey, sig: bytes, data: bytes, what: str) -> None:
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise SignatureError(f"TDX {what} does not verify") from exc


@dataclass(frozen=True)
class VerifiedTdx:
    quote: TdxQuote
    pck: x509.Certificate
    pck_info: PckInfo
    root: Root
    chain: tuple[x509.Certificate, ...] = ()  # the verified path, PCK first, root last


def verify_quote(quote_bytes: bytes, roots: list[Root], now: datetime) -> VerifiedTdx:
    """Steps 1–6 of the module doc; failures are MalformedError (structure), then ChainError
    (PCK chain and its SGX extension), then SignatureError (QE report, binding, quote)."""
    q = parse_quote(quote_bytes)  # 1
    if q.qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise MalformedError(f"TDX QE vendor {q.qe_vendor_id.hex()} is not Intel's")
    chain = load_pem_chain(q.pck_chain_pem, "TDX PCK")
    if not chain:
        raise MalformedError("TDX quote carries no PCK certificate")
    if not roots:
        raise ChainError("TDX: the policy accepts no root for this platform")
    failures: list[str] = []
    root: Root | None = None
    for candidate in roots:  # 2
        try:
            verify_chain_webpki(chain[0], chain[1:], [candidate.cert], now, "TDX PCK")
        except VerifyError as exc:
            failures.append(f"{candidate.name}: {exc}")
            continue
        root = candidate
        break
    if root is None:
        raise ChainError("TDX PCK chain verifies to no accepted root: " + " | ".join(failures))
    pck = chain[0]
    try:
        info = pck_info(pck)  # 6, read now: a PCK without it is no PCK
    except MalformedError as exc:
        raise ChainError(f"TDX PCK certificate: {exc}") from exc
    pck_key = pck.public_key()
    if not isinstance(pck_key, ec.EllipticCurvePublicKey) or pck_key.curve.name != "secp256r1":
        raise SignatureError("TDX PCK key is not ECDSA P-256")
    _verify_p256(pck_key, q.qe_report_signature, q.qe_report.raw, "QE report signature (PCK)")  # 3
    want = hashlib.sha256(q.attestation_key + q.qe_auth_data).digest() + bytes(32)  # 4
    if not hmac.compare_digest(q.qe_report.report_data, want):
        raise SignatureError("TDX QE report does not bind the attestation key")
    att_key = _p256(q.attestation_key, "attestation key")  # 5
    _verify_p256(att_key, q.signature, q.signed, "quote signature (attestation key)")
    path = issuer_path(chain, root.cert)
    return VerifiedTdx(quote=q, pck=pck, pck_info=info, root=root, chain=path)
