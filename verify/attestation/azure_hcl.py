"""Azure's paravisor (HCL) envelope around a SEV-SNP report, parsed field by field.

On an Azure confidential VM the guest cannot ask the PSP for a report: the paravisor (Microsoft's
HCL, at VMPL0) does, and puts in REPORT_DATA the hash of its own "runtime claims" — a JSON
document holding the vTPM keys, the VM configuration and, since 2023, 64 bytes of `user-data` the
guest wrote to the vTPM. The envelope (read from vTPM NV index 0x01400001) is:

    offset  size  field (all integers little-endian u32)
    0       32    ATTESTATION_HEADER: signature "HCLA", version, report size, request type,
                  status, 3 reserved
    32      1184  HW_ATTESTATION: the SEV-SNP report (a TDX TDREPORT is 1024 bytes + padding)
    1216    20    IGVM_REQUEST_DATA: data size, version, report type (2 = SNP, 4 = TDX),
                  report-data hash type (1 SHA-256, 2 SHA-384, 3 SHA-512), variable data size
    1236    n     variable data: the runtime claims JSON

What this module establishes: the SNP report (verified by the caller like any other), that its
REPORT_DATA begins with the hash of exactly these runtime claims, and the guest's 64 user-data
bytes inside them, which then play the role REPORT_DATA plays for a guest that asks the PSP
itself. What it cannot establish: the SNP MEASUREMENT covers the paravisor, not the guest image
(that is measured into the vTPM, which ccgw does not verify); the caller reports that as a named
check (cpu.paravisor) that the policy must accept explicitly.

Only the SEV-SNP form is accepted: a TDX HCL envelope holds a TDREPORT, which is MACed for the
local platform only, and its quote comes separately (Azure's IMDS); refused with that reason.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any, Final

from ccgw.verify import limits
from ccgw.verify.errors import BindingError, LimitError, MalformedError
from ccgw.verify.jsonkeys import refuse_repeated_keys

_REPEATS = refuse_repeated_keys(MalformedError, "runtime claims")

MAGIC: Final = b"HCLA"  # ATTESTATION_SIGNATURE 0x414C4348, little-endian
HEADER_BYTES: Final = 32
HW_REPORT_AREA_BYTES: Final = 1184
REQUEST_DATA_OFFSET: Final = HEADER_BYTES + HW_REPORT_AREA_BYTES
REQUEST_DATA_FIXED_BYTES: Final = 20
VARIABLE_DATA_OFFSET: Final = REQUEST_DATA_OFFSET + REQUEST_DATA_FIXED_BYTES
SNP_REPORT_BYTES: Final = 1184
REPORT_TYPE_SNP: Final = 2
REPORT_TYPE_TDX: Final = 4
HASHES: Final = {1: "sha256", 2: "sha384", 3: "sha512"}
USER_DATA_BYTES: Final = 64
KNOWN_VERSIONS: Final = frozenset({1, 2})  # ATTESTATION_HEADER and IGVM_REQUEST_DATA versions


def is_envelope(data: bytes) -> bool:
    return data[:4] == MAGIC


@dataclass(frozen=True)
class HclEnvelope:
    header_version: int
    report_size: int
    request_type: int
    status: int
    report_type: int
    hash_name: str
    snp_report: bytes
    runtime_claims: bytes  # exactly the bytes the paravisor hashed

    def check_report_data(self, report_data: bytes) -> None:
        """REPORT_DATA must begin with the hash of the runtime claims (BindingError otherwise).
        The bytes after the hash are not defined by the envelope and are not used."""
        digest = hashlib.new(self.hash_name, self.runtime_claims).digest()
        if report_data[: len(digest)] != digest:
            raise BindingError(
                "SEV-SNP REPORT_DATA does not commit to the paravisor's runtime claims "
                f"({self.hash_name.upper()} differs)"
            )

    def user_data(self) -> bytes:
        """The 64 bytes the guest asked the paravisor to carry (`user-data`, hex)."""
        claims = parse_runtime_claims(self.runtime_claims)
        value = claims.get("user-data")
        if value is None:
            raise BindingError(
                "the paravisor's runtime claims carry no user-data: nothing binds the worker's keys"
            )
        if not isinstance(value, str) or len(value) != 2 * USER_DATA_BYTES:
            raise MalformedError(f"runtime claims: user-data must be {USER_DATA_BYTES} bytes hex")
        try:
            return bytes.fromhex(value)
        except ValueError as exc:
            raise MalformedError("runtime claims: user-data is not hex") from exc


def _u32s(data: bytes, offset: int, n: int) -> tuple[int, ...]:
    return struct.unpack_from(f"<{n}I", data, offset)


def parse_envelope(data: bytes) -> HclEnvelope:
    """Parse every field; MalformedError / LimitError name the field that is wrong."""
    if len(data) > limits.CPU_REPORT_BYTES_MAX:
        raise LimitError("HCL envelope exceeds the CPU report size limit")
    if len(data) < VARIABLE_DATA_OFFSET:
        raise MalformedError(
            f"HCL envelope is {len(data)} bytes; its fixed part alone is {VARIABLE_DATA_OFFSET}"
        )
    if not is_envelope(data):
        raise MalformedError("HCL envelope: signature is not 'HCLA'")
    version, report_size, request_type, status = _u32s(data, 4, 4)
    if version not in KNOWN_VERSIONS:
        raise MalformedError(f"HCL envelope: header version {version} is not known")
    data_size, req_version, report_type, hash_type, var_size = _u32s(data, REQUEST_DATA_OFFSET, 5)
    if req_version not in KNOWN_VERSIONS:
        raise MalformedError(f"HCL envelope: request data version {req_version} is not known")
    if report_type == REPORT_TYPE_TDX:
        raise MalformedError(
            "HCL envelope holds a TDX TDREPORT: it is not signed for remote parties; send the "
            "TD quote itself"
        )
    if report_type != REPORT_TYPE_SNP:
        raise MalformedError(f"HCL envelope: report type {report_type} is not SEV-SNP (2)")
    if hash_type not in HASHES:
        raise MalformedError(f"HCL envelope: report-data hash type {hash_type} is not defined")
    if var_size > limits.HCL_RUNTIME_CLAIMS_BYTES_MAX:
        raise LimitError(
            f"HCL envelope: runtime claims of {var_size} bytes exceed "
            f"{limits.HCL_RUNTIME_CLAIMS_BYTES_MAX}"
        )
    end = VARIABLE_DATA_OFFSET + var_size
    if end > len(data):
        raise MalformedError("HCL envelope: runtime claims run past the end of the envelope")
    if data_size != REQUEST_DATA_FIXED_BYTES + var_size:
        raise MalformedError(
            f"HCL envelope: request data size {data_size} ≠ 20 + runtime claims {var_size}"
        )
    if report_size != end:
        raise MalformedError(f"HCL envelope: report size {report_size} ≠ {end} bytes it holds")
    # Bytes after `end` are the rest of the NV index the envelope was read from: not part of the
    # report, never read.
    return HclEnvelope(
        header_version=version,
        report_size=report_size,
        request_type=request_type,
        status=status,
        report_type=report_type,
        hash_name=HASHES[hash_type],
        snp_report=bytes(data[HEADER_BYTES : HEADER_BYTES + SNP_REPORT_BYTES]),
        runtime_claims=bytes(data[VARIABLE_DATA_OFFSET:end]),
    )


def parse_runtime_claims(raw: bytes) -> dict[str, Any]:
    """The runtime claims JSON: one object, no repeated keys (so it has one meaning)."""
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_REPEATS)
    except MalformedError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedError(f"runtime claims are not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise MalformedError("runtime claims are not a JSON object")
    return value
