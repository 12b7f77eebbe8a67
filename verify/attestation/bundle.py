"""verify_bundle: the one entry point that turns an EvidenceBundle into a trusted worker identity.
The client SDK, the gateway and the auditor tools all call it; nothing else exposes trusted values.

Steps, in order (each failure raises a VerifyError subclass naming the step):
 1. sizes: bundle, CPU report, certificates, GPU evidence within verify.limits;
 2. parse + verify the CPU evidence for its platform (SEV-SNP report or TDX quote), chaining to a
    root the policy accepts;
 3. binding: report_data equals verify.binding.bundle_report_data(bundle) — the keys, the nonce,
    the SHA-256 of the GPU evidence, the model digests and the issue time are what the hardware
    signed, so GPU evidence from another machine cannot be spliced in;
 4. GPU evidence: each report verified to the NVIDIA root, answering the bundle's nonce;
 5. freshness: the expected nonce when the caller chose one; age within policy.max_evidence_age_s;
 6. validate: every policy rule (verify.attestation.validate); all failures are listed at once.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import binding, limits
from ccgw.verify.attestation import nvidia, sevsnp, tdx
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.attestation.validate import validate_gpus, validate_snp, validate_tdx
from ccgw.verify.errors import BindingError, FreshnessError, LimitError, MalformedError, PolicyError


@dataclass(frozen=True)
class GpuClaims:
    """What one verified GPU attests to."""

    index: int
    arch: str
    measurements: Mapping[int, str]  # index → hex
    driver_version: str | None
    vbios_version: str | None


@dataclass(frozen=True)
class VerifiedWorker:
    key_id: str
    keys: pb.WorkerKeys
    evidence_sha256: str
    platform: str  # "sev-snp" | "tdx"
    root: str  # name of the pinned root the CPU evidence chains to
    simulated: bool
    measurement: str  # hex: SEV-SNP MEASUREMENT / TDX MRTD
    platform_id: str  # hex chip id (SEV-SNP) / PPID (TDX) when known
    models: dict[str, bytes]
    issued_at_ms: int
    gpu_count: int
    # Added with real attestation (all have defaults so older constructors keep working).
    product: str = ""  # "milan" | "genoa" | "turin" | "" (TDX / simulated)
    tcb: Mapping[str, int] = field(default_factory=dict)  # SEV-SNP reported TCB components
    guest_svn: int = 0
    vmpl: int | None = None
    host_data: str = ""
    rtmrs: tuple[str, ...] = ()  # TDX RTMR0–3, hex
    mr_seam: str = ""
    tee_tcb_svn: str = ""
    tcb_status: str = ""  # TDX: from collateral, or says that none was supplied
    gpus: tuple[GpuClaims, ...] = ()


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
    if len({g.index for g in bundle.gpus}) != len(bundle.gpus):
        raise MalformedError("GPU indices repeat")
    if bundle.version != 1:
        raise MalformedError(f"evidence bundle version {bundle.version} unsupported")


def verify_bundle(
    bundle: pb.EvidenceBundle,
    policy: Policy,
    roots: RootStore,
    now: datetime,
    expected_nonce: bytes | None = None,
) -> VerifiedWorker:
    _check_sizes(bundle)  # 1
    binding.check_keys(bundle.keys)
    problems: list[str] = []
    claims: dict[str, object]
    # 2. CPU evidence
    if bundle.platform == pb.SEV_SNP:
        snp = sevsnp.verify_report(
            bundle.cpu_report,
            list(bundle.cpu_certs),
            roots.for_platform(policy.accepted_roots, "sev-snp"),
            now,
        )
        rep = snp.report
        report_data = rep.report_data
        reported = sevsnp.TcbVersion(rep.reported_tcb.raw, snp.product == "turin")
        claims = dict(
            platform="sev-snp",
            root=snp.root.name,
            simulated=snp.root.simulated,
            measurement=rep.measurement.hex(),
            platform_id=rep.chip_id.hex(),
            product=snp.product or "",
            tcb=reported.components(),
            guest_svn=rep.guest_svn,
            vmpl=rep.vmpl,
            host_data=rep.host_data.hex(),
        )
        validate_snp(snp, policy, problems)
    elif bundle.platform == pb.TDX:
        if bundle.cpu_certs:
            raise MalformedError(
                "TDX evidence carries its PCK chain in the quote; cpu_certs must be empty"
            )
        tdx_roots = roots.for_platform(policy.accepted_roots, "tdx")
        td = tdx.verify_quote(bundle.cpu_report, tdx_roots, now)
        body = td.quote.body
        report_data = body.report_data
        status = validate_tdx(td, policy, tdx_roots, now, problems)
        claims = dict(
            platform="tdx",
            root=td.root.name,
            simulated=td.root.simulated,
            measurement=body.mr_td.hex(),
            platform_id=td.pck_info.ppid.hex(),
            rtmrs=tuple(r.hex() for r in body.rtmrs),
            mr_seam=body.mr_seam.hex(),
            tee_tcb_svn=body.tee_tcb_svn.hex(),
            tcb_status=status,
        )
    else:
        raise MalformedError(f"evidence platform {bundle.platform} is not supported")
    # 3. binding
    if not hmac.compare_digest(report_data, binding.bundle_report_data(bundle)):
        raise BindingError(
            "report_data does not bind the presented keys, nonce, GPU evidence, models and time"
        )
    # 4. GPU evidence
    gpu_roots = roots.for_platform(policy.accepted_roots, "nvidia")
    gpus = [
        nvidia.verify_report(
            g.report, g.cert_chain, gpu_roots, now, bundle.nonce, index=g.index, arch=g.arch
        )
        for g in bundle.gpus
    ]
    validate_gpus(gpus, policy, problems)
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
    # 6. validate (the rules ran above, next to the records they read; all reported together)
    if problems:
        raise PolicyError(problems)
    return VerifiedWorker(
        key_id=binding.key_id(bundle.keys),
        keys=bundle.keys,
        evidence_sha256=binding.evidence_sha256(bundle),
        models={m.name: bytes(m.sha256) for m in bundle.models},
        issued_at_ms=bundle.issued_at_ms,
        gpu_count=len(bundle.gpus),
        gpus=tuple(
            GpuClaims(
                index=g.index,
                arch=g.arch,
                measurements=g.measurements,
                driver_version=g.report.driver_version,
                vbios_version=g.report.vbios_version,
            )
            for g in gpus
        ),
        **claims,  # type: ignore[arg-type]
    )
