"""NVIDIA Hopper/Blackwell GPU attestation reports, as NVML returns them
(nvmlDeviceGetConfComputeGpuAttestationReport): the DMTF SPDM 1.1 GET_MEASUREMENTS request followed
by the MEASUREMENTS response (DSP0274), signed by the GPU's attestation key.

parse_report: bytes → GpuReport, field by field as DSP0274 1.1 and NVIDIA's verifier read it.
Request: version 0x11, code 0xE0, param1 bit 0 (signature requested) set, param2 (the measurement
operation), the 32-byte nonce, the slot id. Response: same version, code 0x60, param2's slot id equal
to the request's, the measurement record (DMTF measurement blocks: index, specification, size, value
type, value size, value — sizes must nest exactly, indices may not repeat or be 0/255, the block
count must match), the responder nonce, the opaque data (NVIDIA's type/length/value fields: every
field is kept whatever its type or length; the ones read here — driver and VBIOS version, NVDEC0
status, FWID — may not repeat), the 96-byte signature. Lengths must add up exactly. SPDM 1.2+
reports are refused: their signature covers a message transcript (GET_VERSION … ALGORITHMS) that the
report does not carry, so the signed bytes cannot be reconstructed. No trust decision here.

verify_report, in order:
 1. parse;
 2. the certificate chain (PEM, leaf first: attestation key leaf → … → NVIDIA Device Identity CA)
    verifies to a pinned root at `now` (cryptography's path validation: every issuer a CA);
 3. the ECDSA P-384/SHA-384 signature (r ‖ s big-endian) over request ‖ response-before-signature
    verifies with the leaf key — it covers the request, so the challenger's nonce is signed;
 4. the request nonce equals the one the verifier expects;
 5. the FWID in the opaque data equals the one the leaf certificate certifies (TCG DICE TcbInfo
    extension), when both are present.
The measurements are compared with golden values by verify.attestation.rim or a pinned policy.
"""

from __future__ import annotations

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
from ccgw.verify.errors import (
    ChainError,
    FreshnessError,
    MalformedError,
    SignatureError,
    VerifyError,
)

REQUEST_BYTES = 37
SIGNATURE_BYTES = 96
NONCE_BYTES = 32
SPDM_VERSION_11 = 0x11
GET_MEASUREMENTS = 0xE0
MEASUREMENTS = 0x60
MEASUREMENT_SPEC_DMTF = 0x01
MEASUREMENT_BLOCKS_MAX = 255

# NVIDIA opaque data TLV types (nvtrust local GPU verifier, "OpaqueDataType").
OPAQUE_DRIVER_VERSION = 3
OPAQUE_GPU_INFO = 4
OPAQUE_VBIOS_VERSION = 6
OPAQUE_NVDEC0_STATUS = 11
OPAQUE_FWID = 20
OPAQUE_READ = (OPAQUE_DRIVER_VERSION, OPAQUE_VBIOS_VERSION, OPAQUE_NVDEC0_STATUS, OPAQUE_FWID)
OPAQUE_FIELDS_MAX = 256
OID_TCG_DICE_TCB_INFO = x509.ObjectIdentifier("2.23.133.5.4.1")
_SHA384_OID = der.oid_bytes("2.16.840.1.101.3.4.2.2")


@dataclass(frozen=True)
class Measurement:
    index: int
    value_type: int  # DMTF value type (bit 7: raw bit stream rather than a digest)
    value: bytes

    @property
    def hex(self) -> str:
        return self.value.hex()


@dataclass(frozen=True)
class GpuReport:
    raw: bytes
    spdm_version: int
    nonce: bytes  # the challenger's nonce (request bytes 4–35)
    slot_id: int
    measurements: tuple[Measurement, ...]
    responder_nonce: bytes
    opaque_fields: tuple[tuple[int, bytes], ...]  # (type, value) in report order, all kept
    signature: bytes  # r ‖ s, big-endian
    measurement_operation: int = 0xFF

    @property
    def signed(self) -> bytes:
        return self.raw[:-SIGNATURE_BYTES]

    @property
    def opaque(self) -> dict[int, bytes]:
        """Opaque fields by type (for types that repeat, the first; never read for trust)."""
        out: dict[int, bytes] = {}
        for t, v in self.opaque_fields:
            out.setdefault(t, v)
        return out

    def opaque_field(self, typ: int) -> bytes | None:
        """The one value of a field this module reads (parse refuses repeats of those)."""
        return next((v for t, v in self.opaque_fields if t == typ), None)

    @property
    def driver_version(self) -> str | None:
        v = self.opaque_field(OPAQUE_DRIVER_VERSION)
        return v.split(b"\x00", 1)[0].decode("ascii", "replace") if v is not None else None

    @property
    def vbios_version(self) -> str | None:
        v = self.opaque_field(OPAQUE_VBIOS_VERSION)
        if v is None or len(v) < 5:
            return None
        return f"{v[3]:02X}.{v[2]:02X}.{v[1]:02X}.{v[0]:02X}.{v[4]:02X}"

    @property
    def fwid(self) -> bytes | None:
        return self.opaque_field(OPAQUE_FWID)

    def measurement_map(self) -> dict[int, str]:
        return {m.index: m.hex for m in self.measurements}


def _u24(b: bytes) -> int:
    return int.from_bytes(b, "little")


def parse_report(data: bytes) -> GpuReport:
    if len(data) > limits.GPU_REPORT_BYTES_MAX:
        raise MalformedError("GPU attestation report too large")
    if len(data) < REQUEST_BYTES + 8 + NONCE_BYTES + 2 + SIGNATURE_BYTES:
        raise MalformedError(f"GPU attestation report is only {len(data)} bytes")
    req, resp = data[:REQUEST_BYTES], data[REQUEST_BYTES:]
    version = req[0]
    if version != SPDM_VERSION_11:
        raise MalformedError(
            f"GPU report SPDM version 0x{version:02X} is not supported: only SPDM 1.1 "
            "measurement signatures cover bytes the report carries"
        )
    if req[1] != GET_MEASUREMENTS:
        raise MalformedError("GPU report does not start with an SPDM GET_MEASUREMENTS request")
    if not req[2] & 0x01:
        raise MalformedError("GPU report request did not ask for a signature")
    nonce = req[4 : 4 + NONCE_BYTES]
    slot_id = req[36] & 0x0F
    if resp[0] != version:
        raise MalformedError("GPU report response SPDM version differs from the request's")
    if resp[1] != MEASUREMENTS:
        raise MalformedError(f"GPU report response code 0x{resp[1]:02X} is not MEASUREMENTS")
    if resp[3] & 0x0F != slot_id:
        raise MalformedError("GPU report response slot differs from the request's")
    n_blocks = resp[4]
    rec_len = _u24(resp[5:8])
    off = 8
    if off + rec_len + NONCE_BYTES + 2 > len(resp):
        raise MalformedError("GPU report measurement record runs past the report")
    record = resp[off : off + rec_len]
    off += rec_len
    responder_nonce = resp[off : off + NONCE_BYTES]
    off += NONCE_BYTES
    (opaque_len,) = struct.unpack_from("<H", resp, off)
    off += 2
    if off + opaque_len + SIGNATURE_BYTES != len(resp):
        raise MalformedError(
            f"GPU report length {len(data)} does not match its fields "
            f"(opaque data {opaque_len} bytes, signature {SIGNATURE_BYTES})"
        )
    opaque = _parse_opaque(resp[off : off + opaque_len])
    off += opaque_len
    signature = resp[off:]
    measurements = _parse_record(record, n_blocks)
    return GpuReport(
        raw=bytes(data),
        spdm_version=version,
        nonce=nonce,
        slot_id=slot_id,
        measurements=measurements,
        responder_nonce=responder_nonce,
        opaque_fields=opaque,
        signature=signature,
        measurement_operation=req[3],
    )


def _parse_record(record: bytes, n_blocks: int) -> tuple[Measurement, ...]:
    out: list[Measurement] = []
    seen: set[int] = set()
    off = 0
    while off < len(record):
        if off + 4 > len(record):
            raise MalformedError("GPU measurement block header truncated")
        index, spec, size = (
            record[off],
            record[off + 1],
            int.from_bytes(record[off + 2 : off + 4], "little"),
        )
        body = record[off + 4 : off + 4 + size]
        if len(body) != size:
            raise MalformedError(f"GPU measurement block {index} truncated")
        if spec != MEASUREMENT_SPEC_DMTF:
            raise MalformedError(f"GPU measurement block {index} is not a DMTF measurement")
        if size < 3 or int.from_bytes(body[1:3], "little") != size - 3:
            raise MalformedError(f"GPU measurement block {index} has inconsistent sizes")
        if index in seen or index in (0, 0xFF):
            raise MalformedError(f"GPU measurement index {index} repeats or is reserved")
        seen.add(index)
        out.append(Measurement(index=index, value_type=body[0], value=body[3:]))
        off += 4 + size
    if len(out) != n_blocks:
        raise MalformedError(
            f"GPU report says {n_blocks} measurement blocks, record holds {len(out)}"
        )
    return tuple(out)


def _parse_opaque(data: bytes) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    off = 0
    while off < len(data):
        if off + 4 > len(data):
            raise MalformedError("GPU opaque data TLV header truncated")
        typ, size = struct.unpack_from("<HH", data, off)
        value = data[off + 4 : off + 4 + size]
        if len(value) != size:
            raise MalformedError(f"GPU opaque data field {typ} truncated")
        if typ in OPAQUE_READ and any(t == typ for t, _ in out):
            raise MalformedError(f"GPU opaque data field {typ} repeats")
        out.append((typ, value))
        if len(out) > OPAQUE_FIELDS_MAX:
            raise MalformedError("GPU opaque data has too many fields")
        off += 4 + size
    return tuple(out)


def cert_fwid(cert: x509.Certificate) -> bytes | None:
    """The SHA-384 FWID a leaf certifies in its TCG DICE TcbInfo extension, if any."""
    try:
        ext = cert.extensions.get_extension_for_oid(OID_TCG_DICE_TCB_INFO)
    except x509.ExtensionNotFound:
        return None
    if not isinstance(ext.value, x509.UnrecognizedExtension):
        return None
    nodes = list(der.walk(der.read_one(ext.value.value, "DICE TcbInfo")))
    for i, node in enumerate(nodes[:-1]):
        nxt = nodes[i + 1]
        if (
            node.tag == der.TAG_OID
            and node.value == _SHA384_OID
            and nxt.tag == der.TAG_OCTET_STRING
        ):
            return nxt.value
    return None


@dataclass(frozen=True)
class VerifiedGpu:
    index: int
    arch: str
    report: GpuReport
    leaf: x509.Certificate
    root: Root
    chain: tuple[x509.Certificate, ...] = ()  # the verified path, leaf first, root last

    @property
    def measurements(self) -> dict[int, str]:
        return self.report.measurement_map()


def verify_signature(report: GpuReport, leaf: x509.Certificate) -> None:
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise SignatureError("GPU attestation key is not ECDSA P-384")
    r = int.from_bytes(report.signature[:48], "big")
    s = int.from_bytes(report.signature[48:], "big")
    try:
        key.verify(encode_dss_signature(r, s), report.signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature as exc:
        raise SignatureError(
            "GPU attestation report signature does not verify with the leaf key"
        ) from exc


def verify_report(
    report_bytes: bytes,
    cert_chain_pem: bytes,
    roots: list[Root],
    now: datetime,
    expected_nonce: bytes,
    *,
    index: int = 0,
    arch: str = "",
) -> VerifiedGpu:
    what = f"GPU {index}"
    report = parse_report(report_bytes)  # 1
    chain = load_pem_chain(cert_chain_pem, f"{what}")  # 2
    if not chain:
        raise MalformedError(f"{what}: no certificate chain")
    if not roots:
        raise ChainError(f"{what}: the policy accepts no NVIDIA root")
    failures: list[str] = []
    root: Root | None = None
    for candidate in roots:
        try:
            verify_chain_webpki(chain[0], chain[1:], [candidate.cert], now, what)
        except VerifyError as exc:
            failures.append(f"{candidate.name}: {exc}")
            continue
        root = candidate
        break
    if root is None:
        raise ChainError(f"{what} chain verifies to no accepted root: " + " | ".join(failures))
    leaf = chain[0]
    verify_signature(report, leaf)  # 3
    certified = cert_fwid(leaf)  # 5
    if certified is not None and report.fwid is not None and certified != report.fwid:
        raise SignatureError(f"{what} firmware id differs from the one its certificate names")
    if len(expected_nonce) != NONCE_BYTES or not hmac.compare_digest(
        report.nonce, expected_nonce
    ):  # 4
        raise FreshnessError(f"{what} attestation report answers another nonce")
    path = issuer_path(chain, root.cert)
    return VerifiedGpu(index=index, arch=arch, report=report, leaf=leaf, root=root, chain=path)
