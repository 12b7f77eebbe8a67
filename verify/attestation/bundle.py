"""verify_bundle: the one entry point that turns an EvidenceBundle into a trusted worker identity.

Steps, in order (each failure raises a VerifyError subclass naming the step):
 1. sizes: bundle, CPU report, certificates, GPU evidence within verify.limits;
 2. parse + verify the CPU evidence for its platform, chaining to a root the policy accepts;
 3. binding: report_data equals verify.binding.bundle_report_data(bundle) — the keys, the nonce,
    the GPU evidence digest, the model digests and the issue time are what the hardware signed;
 4. GPU evidence (when present or required): verified for the same nonce;
 5. freshness: the expected nonce when the caller chose one; age within policy.max_evidence_age_s;
 6. validate: debug off, launch measurement allowed, GPU required.
Only the returned VerifiedWorker exposes trusted values.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from protos.ccgw.v1 import common_pb2 as pb
from verify import binding, limits
from verify.attestation import sevsnp
from verify.attestation.policy import Policy
from verify.attestation.roots import RootStore
from verify.errors import BindingError, FreshnessError, LimitError, MalformedError, PolicyError


@dataclass(frozen=True)
class VerifiedWorker:
    key_id: str
    keys: pb.WorkerKeys
    evidence_sha256: str
    platform: str  # "sev-snp" | "tdx"
    root: str  # name of the pinned root the CPU evidence chains to
    simulated: bool
    measurement: str  # hex
    platform_id: str  # hex chip id (SEV-SNP) / PPID (TDX) when known
    models: dict[str, bytes]
    issued_at_ms: int
    gpu_count: int


def _check_sizes(bundle: pb.EvidenceBundle) -> None:
    if bundle.ByteSize() > limits.EVIDENCE_BUNDLE_BYTES_MAX:
        raise LimitError(f"evidence bundle exceeds {limits.EVIDENCE_BUNDLE_BYTES_MAX} bytes")
    if len(bundle.cpu_report) > limits.CPU_REPORT_BYTES_MAX:
        raise LimitError("CPU evidence too large")
    if len(bundle.cpu_certs) > limits.CERTS_PER_CHAIN_MAX:
        raise LimitError("too many CPU certificates")
    if len(bundle.gpus) > limits.GPUS_PER_BUNDLE_MAX:
        raise LimitError("too many GPUs")
    for g in bundle.gpus:
        if (
            len(g.report) > limits.GPU_REPORT_BYTES_MAX
            or len(g.cert_chain) > limits.GPU_CERT_CHAIN_BYTES_MAX
        ):
            raise LimitError(f"GPU {g.index} evidence too large")
    if bundle.version != 1:
        raise MalformedError(f"evidence bundle version {bundle.version} unsupported")


def verify_bundle(
    bundle: pb.EvidenceBundle,
    policy: Policy,
    roots: RootStore,
    now: datetime,
    expected_nonce: bytes | None = None,
) -> VerifiedWorker:
    _check_sizes(bundle)
    binding.check_keys(bundle.keys)
    # 2. CPU evidence
    if bundle.platform == pb.SEV_SNP:
        snp = sevsnp.verify_report(
            bundle.cpu_report,
            list(bundle.cpu_certs),
            roots.for_platform(policy.accepted_roots, "sev-snp"),
            now,
        )
        report_data = snp.report.report_data
        platform, root, simulated = "sev-snp", snp.root.name, snp.root.simulated
        measurement, platform_id = snp.report.measurement.hex(), snp.report.chip_id.hex()
        debug = snp.report.debug_allowed
    else:
        raise MalformedError(f"evidence platform {bundle.platform} is not supported")
    # 3. binding
    if not hmac.compare_digest(report_data, binding.bundle_report_data(bundle)):
        raise BindingError(
            "report_data does not bind the presented keys, nonce, GPU evidence, models and time"
        )
    # 4. GPU evidence
    if bundle.gpus:
        raise PolicyError("GPU evidence present but no GPU verifier is configured")
    if policy.require_gpu and not bundle.gpus:
        raise PolicyError("policy requires GPU evidence; the bundle has none")
    # 5. freshness
    if expected_nonce is not None and not hmac.compare_digest(bundle.nonce, expected_nonce):
        raise FreshnessError("evidence answers another nonce than the one asked")
    now_ms = int(now.timestamp() * 1000)
    if bundle.issued_at_ms > now_ms + policy.clock_skew_s * 1000:
        raise FreshnessError("evidence is issued in the future")
    if now_ms - bundle.issued_at_ms > policy.max_evidence_age_s * 1000:
        raise FreshnessError(
            f"evidence is {(now_ms - bundle.issued_at_ms) // 1000} s old; "
            f"policy allows {policy.max_evidence_age_s} s"
        )
    # 6. validate
    problems = []
    if debug and not policy.allow_debug:
        problems.append("guest policy allows debugging")
    if policy.allowed_measurements is not None and measurement not in policy.allowed_measurements:
        problems.append(f"launch measurement {measurement[:16]}… is not allowed")
    if problems:
        raise PolicyError(problems)
    return VerifiedWorker(
        key_id=binding.key_id(bundle.keys),
        keys=bundle.keys,
        evidence_sha256=binding.evidence_sha256(bundle),
        platform=platform,
        root=root,
        simulated=simulated,
        measurement=measurement,
        platform_id=platform_id,
        models={m.name: bytes(m.sha256) for m in bundle.models},
        issued_at_ms=bundle.issued_at_ms,
        gpu_count=len(bundle.gpus),
    )
