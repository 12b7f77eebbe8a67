"""Interfaces to the hardware the worker collects evidence from (injected, so tests need none).

A CpuTee produces a CPU attestation (SEV-SNP report or TDX quote) over 64 bytes of report_data; a
GpuAttester produces GPU evidence for a nonce. Real implementations: enclave.evidence (configfs-tsm,
NVML). The simulated TEE (package `simtee`) implements CpuTee with a locally generated root.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ccgw.protos.ccgw.v1 import common_pb2 as pb


@dataclass(frozen=True)
class CpuEvidence:
    platform: int  # pb.Platform value
    report: bytes
    certs: tuple[bytes, ...]  # DER, leaf first (may be empty for TDX: the quote carries the chain)


class CpuTee(Protocol):
    name: str  # "sev-snp", "tdx", "simulated-sev-snp"

    def attest(self, report_data: bytes) -> CpuEvidence: ...


class GpuAttester(Protocol):
    def attest(self, nonce: bytes) -> list[pb.GpuEvidence]: ...
