"""verify_bundle: the one entry point that turns an EvidenceBundle into a trusted worker identity
and an attestation report (verify.attestation.report) that names every check. The client SDK, the
gateway and the auditor tools all call it; nothing else exposes trusted values.

Steps, in order (the checks they record in brackets; a failure stops the steps that depend on it,
whose checks are then skips "not reached"):
 1. sizes and keys within verify.limits [cpu.report, binding.keys];
 2. the CPU evidence for its platform — SEV-SNP report or TDX quote — parsed, chained to a root the
    policy accepts, its signature verified [cpu.report, cpu.chain, cpu.signature];
 3. binding: report_data equals verify.binding.bundle_report_data(bundle) — the keys, the nonce,
    the SHA-256 of the GPU evidence, the model digests and the issue time are what the hardware
    signed, so GPU evidence from another machine cannot be spliced in [binding.keys,
    binding.cpu_gpu];
 4. GPU evidence: each report verified to the NVIDIA root, answering the bundle's nonce
    [gpu.report, gpu.chain, gpu.signature, gpu.nonce, gpu.cc_mode];
 5. freshness: the caller's own nonce when it chose one; age within policy.max_evidence_age_s
    [evidence.nonce, evidence.freshness];
 6. validate: every policy rule and the collateral (CRLs, Intel TCB status, NVIDIA RIMs) — see
    verify.attestation.validate [cpu.debug, cpu.tcb, cpu.measurement, platform.identity,
    cpu.collateral, cpu.revocation, gpu.revocation, gpu.measurements, models.digests, root.real];
 7. release inclusion [release.inclusion]: with a release policy (policy.release_view, ADR 10),
    the worker's platform, launch measurement, GPU values and model digests must be allowed by a
    trusted, logged, unrevoked release valid now (verify.release.policy.decide); the release is
    named in the report and in `worker.release`. Without one it is a skip that says why
    (--accept-unreleased-software, or no release policy), never a pass.
The worker is trusted when no check refuses (a fail, or a skip the policy enforces); otherwise the
first non-policy failure is raised with its own type, or one PolicyError lists every problem — and
the error carries the report (`exc.report`). A trusted worker carries it too (`worker.report`).
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import binding, limits
from ccgw.verify.attestation import azure_hcl, nvidia, sevsnp, tdx, validate
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.report import AttestationReport, ReportBuilder, Status
from ccgw.verify.attestation.roots import Root, RootStore
from ccgw.verify.attestation.supplied import Collateral
from ccgw.verify.errors import (
    BindingError,
    ChainError,
    FreshnessError,
    LimitError,
    MalformedError,
    PolicyError,
    SignatureError,
    VerifyError,
)
from ccgw.verify.release.policy import WorkerClaims, decide


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
    report: AttestationReport | None = field(default=None, compare=False, repr=False)
    # The release that admits it (Accepted.describe()) and its digest; "" without a release policy.
    release: str = ""
    release_digest: str = ""


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


class _Stop(Exception):
    """A step failed; the checks that depend on it are not reached."""


def _stage(b: ReportBuilder, error: VerifyError, order: tuple[str, ...]) -> None:
    """Record a verify-layer failure: checks before the one the error's kind names pass, that one
    fails, the rest are not reached. `order` is structure, chain, signature[, nonce]."""
    kinds: list[tuple[type[VerifyError], str]] = [
        (MalformedError, order[0]),
        (LimitError, order[0]),
        (ChainError, order[1]),
        (SignatureError, order[2]),
    ]
    if len(order) > 3:
        kinds.append((FreshnessError, order[3]))
    failed = next((cid for kind, cid in kinds if isinstance(error, kind)), order[0])
    for cid in order[: order.index(failed)]:
        b.passed(cid)
    b.failed(failed, error)


_CPU = ("cpu.report", "cpu.chain", "cpu.signature")


def _cpu(
    b: ReportBuilder,
    bundle: pb.EvidenceBundle,
    policy: Policy,
    roots: RootStore,
    now: datetime,
    col: Collateral,
    vendor_only: bool = False,
) -> tuple[bytes, Root, dict[str, Any]]:
    """Step 2 and the CPU half of step 6. Returns report_data, the root and the worker claims.
    `vendor_only`: vendor evidence alone (verify_vendor_evidence), where no worker key is expected."""
    if bundle.platform == pb.SEV_SNP:
        envelope: azure_hcl.HclEnvelope | None = None
        try:
            raw = bundle.cpu_report
            if azure_hcl.is_envelope(raw):
                envelope = azure_hcl.parse_envelope(raw)
                raw = envelope.snp_report
            snp = sevsnp.verify_report(
                raw,
                list(bundle.cpu_certs),
                roots.for_platform(policy.accepted_roots, "sev-snp"),
                now,
            )
        except VerifyError as exc:
            _stage(b, exc, _CPU)
            raise _Stop from exc
        rep = snp.report
        wrapped = " in Azure's paravisor (HCL) envelope" if envelope else ""
        b.passed(
            "cpu.report", f"SEV-SNP report v{rep.version} ({snp.product or 'simulated'}){wrapped}"
        )
        b.passed("cpu.chain", f"{rep.signing_key.upper()} → {snp.root.name}")
        b.passed("cpu.signature", f"ECDSA P-384 by the {rep.signing_key.upper()}")
        report_data = _paravisor(b, envelope, rep.report_data, policy, vendor_only)
        validate.snp_checks(b, snp, policy)
        b.skipped("cpu.collateral", "AMD publishes no TCB status collateral (cpu.tcb is the rule)")
        validate.revocation(b, "cpu.revocation", [snp.chain], col, now)
        reported = sevsnp.TcbVersion(rep.reported_tcb.raw, snp.product == "turin")
        claims: dict[str, Any] = dict(
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
        return report_data, snp.root, claims
    if bundle.platform != pb.TDX:
        err = MalformedError(f"evidence platform {bundle.platform} is not supported")
        b.failed("cpu.report", err)
        raise _Stop from err
    if bundle.cpu_certs:
        err = MalformedError(
            "TDX evidence carries its PCK chain in the quote; cpu_certs must be empty"
        )
        b.failed("cpu.report", err)
        raise _Stop from err
    tdx_roots = roots.for_platform(policy.accepted_roots, "tdx")
    try:
        td = tdx.verify_quote(bundle.cpu_report, tdx_roots, now)
    except VerifyError as exc:
        _stage(b, exc, _CPU)
        raise _Stop from exc
    body = td.quote.body
    b.passed(
        "cpu.report",
        f"TDX quote v{td.quote.version}, TD {'1.5' if body.mr_service_td else '1.0'} body",
    )
    b.passed("cpu.chain", f"PCK → {td.root.name}")
    b.passed("cpu.paravisor", "a TD quote (no paravisor)")
    b.passed("cpu.signature", "QE report (PCK), attestation key binding, quote (ECDSA P-256)")
    validate.tdx_checks(b, td, policy)
    status = validate.tdx_collateral(b, td, policy, col, tdx_roots, now)
    validate.revocation(b, "cpu.revocation", [td.chain], col, now)
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
    return body.report_data, td.root, claims


def _paravisor(
    b: ReportBuilder,
    envelope: azure_hcl.HclEnvelope | None,
    report_data: bytes,
    policy: Policy,
    vendor_only: bool = False,
) -> bytes:
    """cpu.paravisor, and the 64 bytes that bind the worker's keys: REPORT_DATA itself, or — for a
    report Azure's paravisor requested — the guest's user-data inside the runtime claims whose
    hash REPORT_DATA holds (verify.attestation.azure_hcl)."""
    if envelope is None:
        b.passed("cpu.paravisor", "the guest's own report (no paravisor)")
        return report_data
    try:
        envelope.check_report_data(report_data)
        user_data = report_data if vendor_only else envelope.user_data()
    except VerifyError as exc:
        b.failed("binding.keys", exc)
        raise _Stop from exc
    allowed = "accepted by the policy (sev_snp.allow_azure_paravisor)"
    b.skipped(
        "cpu.paravisor",
        "Azure's paravisor (HCL) requested the report: the launch measurement covers the "
        "paravisor, not the worker image, and the guest is measured only into the vTPM, which "
        "ccgw does not verify",
        "Azure HCL envelope",
        allowed if policy.snp_allow_azure_paravisor else "the guest's own report",
    )
    return user_data


_GPU = ("gpu.report", "gpu.chain", "gpu.signature", "gpu.nonce")


def _gpus(
    b: ReportBuilder,
    bundle: pb.EvidenceBundle,
    policy: Policy,
    roots: RootStore,
    now: datetime,
    col: Collateral,
) -> list[nvidia.VerifiedGpu]:
    """Steps 4 and the GPU half of step 6."""
    if not bundle.gpus:
        why = "no GPU evidence in the bundle"
        if policy.require_gpu:
            err = PolicyError(
                "policy requires a GPU in confidential-computing mode; the bundle has none"
            )
            b.failed("gpu.cc_mode", err, "no GPU", "a GPU in CC mode", [str(err)])
        for cid in (*_GPU, "gpu.cc_mode", "gpu.revocation", "gpu.measurements"):
            if not b.has(cid):
                b.skipped(cid, why)
        return []
    gpu_roots = roots.for_platform(policy.accepted_roots, "nvidia")
    gpus = []
    for g in bundle.gpus:
        try:
            gpus.append(
                nvidia.verify_report(
                    g.report, g.cert_chain, gpu_roots, now, bundle.nonce, index=g.index, arch=g.arch
                )
            )
        except VerifyError as exc:
            _stage(b, exc, _GPU)
            raise _Stop from exc
    n = len(gpus)
    b.passed("gpu.report", f"{n} SPDM 1.1 measurement report(s)")
    b.passed("gpu.chain", f"{n} chain(s) → {gpus[0].root.name}")
    b.passed("gpu.signature", "ECDSA P-384 by each GPU's attestation key")
    b.passed("gpu.nonce", "each GPU report answers the bundle's nonce")
    b.passed("gpu.cc_mode", f"{n} verified report(s): NVML serves them only in CC mode")
    rim_paths = validate.rim_signing_paths(gpus, policy.gpu_rims, roots.rim_root(), now)
    validate.revocation(b, "gpu.revocation", [*(g.chain for g in gpus), *rim_paths], col, now)
    validate.gpu_measurements(b, gpus, policy, roots.rim_root(), now)
    return gpus


def _binding(b: ReportBuilder, bundle: pb.EvidenceBundle, report_data: bytes) -> None:
    """Step 3."""
    gpu_sha = binding.gpu_evidence_sha256(bundle.gpus)
    if hmac.compare_digest(report_data, binding.bundle_report_data(bundle)):
        b.passed("binding.keys", f"key id {binding.key_id(bundle.keys)}", "report_data binding")
        if bundle.gpus:
            b.passed("binding.cpu_gpu", f"GPU evidence SHA-256 {gpu_sha.hex()[:16]}…")
        else:
            b.skipped("binding.cpu_gpu", "no GPU evidence in the bundle")
        return
    err = BindingError(
        "report_data does not bind the presented keys, nonce, GPU evidence, models and time"
    )
    b.failed("binding.keys", err)
    if bundle.gpus:
        b.failed("binding.cpu_gpu", err)


def _freshness(
    b: ReportBuilder,
    bundle: pb.EvidenceBundle,
    policy: Policy,
    now: datetime,
    expected_nonce: bytes | None,
) -> None:
    """Step 5."""
    if expected_nonce is None:
        b.skipped("evidence.nonce", "no challenge of the client's own: the gateway chose the nonce")
    elif hmac.compare_digest(bundle.nonce, expected_nonce):
        b.passed("evidence.nonce", bundle.nonce.hex()[:16] + "…", "the client's nonce")
    else:
        b.failed(
            "evidence.nonce", FreshnessError("evidence answers another nonce than the one asked")
        )
    now_ms = int(now.timestamp() * 1000)
    age_s = (now_ms - bundle.issued_at_ms) // 1000
    required = f"≤ {policy.max_evidence_age_s} s old, ≤ {policy.clock_skew_s} s in the future"
    if bundle.issued_at_ms > now_ms + policy.clock_skew_s * 1000:
        err = FreshnessError("evidence is issued in the future")
        b.failed("evidence.freshness", err, f"{age_s} s old", required)
    elif now_ms - bundle.issued_at_ms > policy.max_evidence_age_s * 1000:
        err = FreshnessError(
            f"evidence is {age_s} s old; policy allows {policy.max_evidence_age_s} s"
        )
        b.failed("evidence.freshness", err, f"{age_s} s old", required)
    else:
        b.passed("evidence.freshness", f"{age_s} s old", required)


UNRELEASED_SKIP = "NOT CHECKED: --accept-unreleased-software accepts software that is in no release"


def release_inclusion(
    b: ReportBuilder, worker: VerifiedWorker, policy: Policy, now: datetime
) -> VerifiedWorker:
    """Step 7: the release that allows the worker's software, or the check fails naming the
    measurement and every release checked."""
    view = policy.release_view
    if view is None:
        why = UNRELEASED_SKIP if policy.accept_unreleased else "no release policy (no release key)"
        b.skipped("release.inclusion", why)
        return worker
    required = (
        f"a trusted, unrevoked release valid now, in the log at checkpoint size "
        f"{view.checkpoint_size}"
    )
    seen = f"{worker.platform} measurement {worker.measurement[:16]}…"
    try:
        accepted = decide(WorkerClaims.of(worker), view, now)
    except PolicyError as exc:
        b.failed("release.inclusion", exc, seen, required)
        return worker
    b.passed("release.inclusion", accepted.describe(), required)
    return replace(worker, release=accepted.describe(), release_digest=accepted.digest)


def verify_bundle(
    bundle: pb.EvidenceBundle,
    policy: Policy,
    roots: RootStore,
    now: datetime,
    expected_nonce: bytes | None = None,
    collateral: Collateral | None = None,
) -> VerifiedWorker:
    """Verify `bundle` (see the module doc). `collateral` adds to the policy's own (e.g. the
    gateway's cache); nothing in it is trusted before it verifies to a pinned root."""
    b = ReportBuilder(policy.enforcement())
    col = policy.collateral.merged(collateral)
    worker: VerifiedWorker | None = None
    with contextlib.suppress(_Stop):
        worker = _run(b, bundle, policy, roots, now, expected_nonce, col)
    report = b.build(
        verified_at=now.isoformat(),
        platform={pb.SEV_SNP: "sev-snp", pb.TDX: "tdx"}.get(bundle.platform, "unknown"),
        evidence_sha256=_digest(bundle),
        collateral_sources=tuple(s for s in col.sources if not col.empty),
    )
    if worker is None or not report.trusted:
        error = report.refusal_error()
        error.report = report
        raise error
    return _with_report(worker, report)


def _digest(bundle: pb.EvidenceBundle) -> str:
    try:
        return binding.evidence_sha256(bundle)
    except VerifyError:
        return ""


def _with_report(worker: VerifiedWorker, report: AttestationReport) -> VerifiedWorker:
    return replace(worker, report=report)


def _run(
    b: ReportBuilder,
    bundle: pb.EvidenceBundle,
    policy: Policy,
    roots: RootStore,
    now: datetime,
    expected_nonce: bytes | None,
    col: Collateral,
) -> VerifiedWorker:
    try:  # 1
        _check_sizes(bundle)
    except VerifyError as exc:
        b.failed("cpu.report", exc)
        raise _Stop from exc
    try:
        binding.check_keys(bundle.keys)
        binding.models_encoding(bundle.models)
    except VerifyError as exc:
        b.failed("binding.keys", exc)
        raise _Stop from exc
    report_data, root, claims = _cpu(b, bundle, policy, roots, now, col)  # 2, 6
    _binding(b, bundle, report_data)  # 3
    gpus = _gpus(b, bundle, policy, roots, now, col)  # 4, 6
    _freshness(b, bundle, policy, now, expected_nonce)  # 5
    validate.models(b, bundle.models, policy)  # 6
    validate.root_real(b, root)
    worker = VerifiedWorker(
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
        **claims,
    )
    return release_inclusion(b, worker, policy, now)  # 7


VENDOR_CHECKS = ("cpu.report", "cpu.chain", "cpu.signature")
VENDOR_GPU_CHECKS = ("gpu.report", "gpu.chain", "gpu.signature")


@dataclass(frozen=True)
class VendorVerdict:
    """What `verify_vendor_evidence` found: the report; whether the evidence is authentic
    (structure, chain and signature passed for the CPU and every GPU given); and the checks that
    failed (the policy's rules: debug, TCB, pinned values, revocation …). Never a trusted worker:
    nothing in vendor evidence alone binds a worker's keys."""

    report: AttestationReport
    authentic: bool
    failed: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.authentic and not self.failed


def verify_vendor_evidence(
    platform: pb.Platform,
    cpu_report: bytes,
    cpu_certs: list[bytes],
    gpus: list[pb.GpuEvidence],
    policy: Policy,
    roots: RootStore,
    now: datetime,
    *,
    gpu_nonce: bytes | None = None,
    collateral: Collateral | None = None,
) -> VendorVerdict:
    """Offline verification of vendor evidence as a machine produced it (an SEV-SNP report and its
    VCEK/VLEK chain, a TDX quote, NVIDIA SPDM reports and chains), under the same rules and checks
    as `verify_bundle`. What only a ccgw worker's bundle can show is recorded as a skip with the
    reason: the key binding, the bundle's issue time and models, release inclusion. GPU reports are
    checked against `gpu_nonce` when given (a pass or a fail); otherwise each report's own nonce is
    used and gpu.nonce is a skip that says so."""
    b = ReportBuilder(policy.enforcement())
    col = policy.collateral.merged(collateral)
    bundle = pb.EvidenceBundle(
        version=1, platform=platform, cpu_report=cpu_report, cpu_certs=cpu_certs, gpus=gpus
    )
    own_nonce = gpu_nonce is None
    if gpus:
        try:
            first = nvidia.parse_report(gpus[0].report)
            bundle.nonce = gpu_nonce if gpu_nonce is not None else first.nonce
        except VerifyError:
            bundle.nonce = gpu_nonce or bytes(limits.NONCE_BYTES)
    why = "vendor evidence alone: no ccgw worker bundle binds keys to it"
    with contextlib.suppress(_Stop):
        try:
            _check_sizes(bundle)
        except VerifyError as exc:
            b.failed("cpu.report", exc)
            raise _Stop from exc
        _, root, _ = _cpu(b, bundle, policy, roots, now, col, vendor_only=True)
        b.skipped("binding.keys", why)
        b.skipped("binding.cpu_gpu", why)
        _gpus(b, bundle, policy, roots, now, col)
        if gpus and own_nonce and b.status("gpu.nonce") is Status.PASS:
            b.replace_with_skip("gpu.nonce", "no nonce given: each report's own nonce was used")
        b.skipped("evidence.nonce", why)
        b.skipped("evidence.freshness", "vendor evidence carries no issue time")
        b.skipped("models.digests", why)
        validate.root_real(b, root)
        b.skipped("release.inclusion", f"{why} (no worker whose software a release could allow)")
    report = b.build(
        verified_at=now.isoformat(),
        platform={pb.SEV_SNP: "sev-snp", pb.TDX: "tdx"}.get(platform, "unknown"),
        evidence_sha256="",
        collateral_sources=tuple(s for s in col.sources if not col.empty),
    )
    needed = VENDOR_CHECKS + (VENDOR_GPU_CHECKS if gpus else ())
    authentic = all(report.check(c).status is Status.PASS for c in needed)
    failed = tuple(c.id for c in report.checks if c.status is Status.FAIL)
    return VendorVerdict(report=report, authentic=authentic, failed=failed)
