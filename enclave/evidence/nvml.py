"""GPU evidence through NVML (nvidia-ml-py): confidential-computing state and capabilities, the
GPU attestation report for a nonce (SPDM GET_MEASUREMENTS request ‖ MEASUREMENTS response) and the
attestation certificate chain, and the GPUs' ready state.

`check()` refuses, with a message naming exactly what is missing, a machine whose GPUs cannot give
confidential evidence: NVML not loadable, no GPU, GPUs not CC-capable, CC mode off, or CC in
developer-tools mode (no memory protection). The NVML module is injected; tests pass a fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ccgw.enclave.errors import EvidenceError
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import limits

ARCH_NAMES = {9: "HOPPER", 10: "BLACKWELL"}
NONCE_BYTES = 32


@dataclass(frozen=True)
class CcStatus:
    gpu_count: int
    cc_capable: bool
    cc_on: bool
    devtools: bool
    environment: str  # "prod" | "sim" | "unavailable"
    ready: bool  # GPUs accept work (set after attestation: `nvidia-smi conf-compute -srs 1`)


def _chain_pem(raw: bytes) -> bytes:
    """NVML returns the chain as PEM text (or DER certificates back to back): normalise to PEM."""
    raw = raw.rstrip(b"\x00")
    if b"-----BEGIN CERTIFICATE-----" in raw:
        return raw
    out: list[bytes] = []
    off = 0
    while off < len(raw) and len(out) < limits.CERTS_PER_CHAIN_MAX:
        if raw[off] != 0x30 or off + 4 > len(raw) or raw[off + 1] != 0x82:
            raise EvidenceError("GPU certificate chain is neither PEM nor DER")
        end = off + 4 + int.from_bytes(raw[off + 2 : off + 4], "big")
        try:
            cert = x509.load_der_x509_certificate(raw[off:end])
        except ValueError as exc:
            raise EvidenceError("GPU certificate chain holds an invalid certificate") from exc
        out.append(cert.public_bytes(serialization.Encoding.PEM))
        off = end
    return b"".join(out)


class NvmlGpuAttester:
    """A GpuAttester backed by NVML. `nvml` is the `pynvml` module (or a fake with its API)."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        # pynvml raises NVMLError subclasses (library not found, not supported, …).
        self._errors: tuple[type[BaseException], ...] = (nvml.NVMLError, OSError)
        try:
            nvml.nvmlInit()
        except self._errors as exc:
            raise EvidenceError(
                f"NVML cannot be initialised ({exc}): no NVIDIA driver, or no GPU visible to this VM"
            ) from exc

    def status(self) -> CcStatus:
        n = self._nvml
        count = int(n.nvmlDeviceGetCount())
        caps = n.nvmlSystemGetConfComputeCapabilities()
        state = n.nvmlSystemGetConfComputeState()
        env = {0: "unavailable", 1: "sim", 2: "prod"}.get(int(state.environment), "unknown")
        ready = int(n.nvmlSystemGetConfComputeGpusReadyState()) == 1
        return CcStatus(
            gpu_count=count,
            cc_capable=int(caps.gpusCaps) == n.NVML_CC_SYSTEM_GPUS_CC_CAPABLE,
            cc_on=int(state.ccFeature) == n.NVML_CC_SYSTEM_FEATURE_ENABLED,
            devtools=int(state.devToolsMode) == n.NVML_CC_SYSTEM_DEVTOOLS_MODE_ON,
            environment=env,
            ready=ready,
        )

    def problems(self) -> list[str]:
        """What keeps these GPUs from giving confidential evidence; empty when nothing does."""
        try:
            st = self.status()
        except self._errors as exc:  # NVMLError_NotSupported on drivers without CC
            return [f"NVML cannot report the confidential-computing state ({exc})"]
        if st.gpu_count == 0:
            return ["no NVIDIA GPU is visible"]
        out = []
        for i in range(st.gpu_count):
            if not st.cc_capable:
                out.append(f"GPU {i}: not confidential-computing capable")
            elif not st.cc_on:
                out.append(f"GPU {i}: confidential computing is OFF")
            elif st.devtools:
                out.append(
                    f"GPU {i}: confidential computing is in DEVTOOLS mode (memory not protected)"
                )
        return out

    def check(self) -> CcStatus:
        problems = self.problems()
        if problems:
            raise EvidenceError("; ".join(problems))
        return self.status()

    def attest(self, nonce: bytes) -> list[pb.GpuEvidence]:
        if len(nonce) != NONCE_BYTES:
            raise EvidenceError(f"GPU nonce must be {NONCE_BYTES} bytes")
        n = self._nvml
        out = []
        for i in range(int(n.nvmlDeviceGetCount())):
            try:
                h = n.nvmlDeviceGetHandleByIndex(i)
                rep = n.nvmlDeviceGetConfComputeGpuAttestationReport(h, nonce)
                report = bytes(rep.attestationReport[: int(rep.attestationReportSize)])
                cert = n.nvmlDeviceGetConfComputeGpuCertificate(h)
                chain = bytes(cert.attestationCertChain[: int(cert.attestationCertChainSize)])
                arch = ARCH_NAMES.get(int(n.nvmlDeviceGetArchitecture(h)), "UNKNOWN")
            except self._errors as exc:  # say which GPU and why
                raise EvidenceError(f"GPU {i}: attestation report unavailable ({exc})") from exc
            if len(report) < 36 or report[4:36] != nonce:
                raise EvidenceError(f"GPU {i}: attestation report does not carry our nonce")
            out.append(
                pb.GpuEvidence(index=i, arch=arch, report=report, cert_chain=_chain_pem(chain))
            )
        return out
