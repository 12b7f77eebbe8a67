"""Assemble an EvidenceBundle in the order the binding rule needs: GPU evidence first (for the
challenger's nonce), then the CPU attestation over report_data that commits to the keys, the nonce,
the SHA-256 of that GPU evidence, the model digests and the issue time."""

from __future__ import annotations

from collections.abc import Mapping

from ccgw.enclave.errors import EvidenceError
from ccgw.enclave.tee import CpuTee, GpuAttester
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import binding, limits


def collect_bundle(
    *,
    cpu: CpuTee,
    gpu: GpuAttester | None,
    keys: pb.WorkerKeys,
    nonce: bytes,
    models: Mapping[str, bytes],
    issued_at_ms: int,
) -> pb.EvidenceBundle:
    if len(nonce) != limits.NONCE_BYTES:
        raise EvidenceError(f"challenge nonce must be {limits.NONCE_BYTES} bytes")
    gpus = gpu.attest(nonce) if gpu is not None else []
    model_digests = [pb.ModelDigest(name=n, sha256=d) for n, d in sorted(models.items())]
    report_data = binding.report_data(
        keys, nonce, binding.gpu_evidence_sha256(gpus), model_digests, issued_at_ms
    )
    cpu_ev = cpu.attest(report_data)
    return pb.EvidenceBundle(
        version=1,
        platform=cpu_ev.platform,  # type: ignore[arg-type]
        cpu_report=cpu_ev.report,
        cpu_certs=list(cpu_ev.certs),
        gpus=gpus,
        keys=keys,
        nonce=nonce,
        models=model_digests,
        issued_at_ms=issued_at_ms,
    )
