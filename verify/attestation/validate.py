"""Validate verified evidence against a Policy (the third layer: parse → verify → validate).

Every function here reads records the verify layer already checked (reports, quotes, chains,
collateral documents, RIMs) and records named checks in the ReportBuilder: pass, fail (with one
sentence per broken rule, all of them) or skip (with why). Rules:

cpu.debug — SEV-SNP: debug off unless allowed; SMT on the platform only when allowed; no migration
  agent unless allowed; VMPL ≤ maximum. TDX: the TUD bits (debug and the bits reserved with it) off.
cpu.tcb — SEV-SNP: reported TCB ≥ the minimum per component (FMC on Turin), guest SVN ≥ minimum.
  TDX: TEE_TCB_SVN ≥ the minimum component-wise. Skip when the policy sets no minimum.
cpu.measurement — SEV-SNP MEASUREMENT and HOST_DATA; TDX MRTD, RTMR0–3, MRSEAM: pinned values.
platform.identity — chip id (a masked chip id cannot satisfy a pin) / PPID on the allow-list.
cpu.collateral — TDX: Intel TCB info and QE identity (verified by verify.attestation.collateral)
  evaluated by verify.attestation.tcb_status; the status must be accepted. SEV-SNP: AMD publishes no
  TCB status, so it is a skip that says so.
cpu.revocation, gpu.revocation — verify.attestation.crl over each verified path.
gpu.cc_mode — a verified report (NVML serves them only in CC mode); required when the policy says.
gpu.measurements — as in the policy's RIMs for the GPU's driver and VBIOS, and pinned values.
models.digests — served models whose names the policy pins have an allowed digest.
root.real — the evidence chains to a real vendor root, not the simulated TEE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify.attestation import collateral as intel
from ccgw.verify.attestation import crl, rim, tcb_status
from ccgw.verify.attestation.nvidia import VerifiedGpu
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.report import ReportBuilder
from ccgw.verify.attestation.roots import Root
from ccgw.verify.attestation.sevsnp import TcbVersion, VerifiedSnp
from ccgw.verify.attestation.supplied import Collateral
from ccgw.verify.attestation.tdx import VerifiedTdx
from ccgw.verify.errors import ChainError, PolicyError, VerifyError

TD_ATTR_TUD_MASK = 0xFF  # TD attributes bits 0–7: "TD under debug" (DEBUG and its reserved bits)


def _short(h: str) -> str:
    return f"{h[:16]}…"


def _record(b: ReportBuilder, cid: str, problems: list[str], seen: str, required: str) -> None:
    if problems:
        b.failed(cid, PolicyError(problems), seen, required, problems)
    else:
        b.passed(cid, seen, required)


def _pinned(
    b: ReportBuilder, cid: str, pins: list[tuple[str, str, frozenset[str] | None]], what: str
) -> None:
    """(label, value, allowed or None) pins; skip when nothing is pinned."""
    active = [(label, v, a) for label, v, a in pins if a is not None]
    seen = ", ".join(f"{label} {_short(v)}" for label, v, a in pins)
    if not active:
        b.skipped(cid, f"{what} not pinned by the policy", seen)
        return
    problems = [f"{label} {_short(v)} is not allowed" for label, v, a in active if v not in a]
    _record(b, cid, problems, seen, "pinned: " + ", ".join(label for label, _, _ in active))


def platform_identity(b: ReportBuilder, policy: Policy, pid: str | None, masked: bool) -> None:
    allowed = policy.allowed_platform_ids
    seen = "chip id masked" if masked else _short(pid or "")
    if allowed is None:
        b.skipped("platform.identity", "no allow-list of platforms in the policy", seen)
    elif masked or pid is None:
        problems = ["chip id is masked, so the platform allow-list cannot be checked"]
        b.failed("platform.identity", PolicyError(problems), seen, "registered machine", problems)
    else:
        problems = [] if pid in allowed else [f"platform {_short(pid)} is not a registered machine"]
        _record(b, "platform.identity", problems, seen, f"one of {len(allowed)} machines")


def snp_checks(b: ReportBuilder, v: VerifiedSnp, policy: Policy) -> None:
    r = v.report
    problems = []
    if r.debug_allowed and not policy.allow_debug:
        problems.append("guest policy allows debugging")
    if r.smt_enabled and not policy.snp_allow_smt:
        problems.append("SMT is enabled on the platform and the policy forbids it")
    if r.migrate_ma_allowed and not policy.snp_allow_migration_agent:
        problems.append("guest policy allows a migration agent")
    if policy.snp_max_vmpl is not None and r.vmpl > policy.snp_max_vmpl:
        problems.append(
            f"report is from VMPL {r.vmpl}; the policy allows at most {policy.snp_max_vmpl}"
        )
    seen = (
        f"debug {'ALLOWED' if r.debug_allowed else 'off'}, SMT {'on' if r.smt_enabled else 'off'},"
        f" migration agent {'allowed' if r.migrate_ma_allowed else 'off'}, VMPL {r.vmpl}"
    )
    req = "debug ALLOWED by the policy (allow_debug)" if policy.allow_debug else "debug off"
    _record(b, "cpu.debug", problems, seen, req)
    tcb = TcbVersion(r.reported_tcb.raw, v.product == "turin").components()
    seen = ", ".join(f"{k} {n}" for k, n in tcb.items()) + f", guest SVN {r.guest_svn}"
    if not policy.snp_min_tcb and not policy.snp_min_guest_svn:
        b.skipped("cpu.tcb", "the policy sets no TCB minimum", seen)
    else:
        problems = [
            f"reported TCB {comp} SVN {tcb[comp]} is below the minimum {minimum}"
            for comp, minimum in sorted(policy.snp_min_tcb.items())
            if comp in tcb and tcb[comp] < minimum
        ]
        if r.guest_svn < policy.snp_min_guest_svn:
            problems.append(
                f"guest SVN {r.guest_svn} is below the minimum {policy.snp_min_guest_svn}"
            )
        mins = dict(policy.snp_min_tcb) | {"guest SVN": policy.snp_min_guest_svn}
        _record(b, "cpu.tcb", problems, seen, "≥ " + ", ".join(f"{k} {n}" for k, n in mins.items()))
    _pinned(
        b,
        "cpu.measurement",
        [
            ("launch measurement", r.measurement.hex(), policy.allowed_measurements),
            ("HOST_DATA", r.host_data.hex(), policy.snp_allowed_host_data),
        ],
        "launch measurement",
    )
    chip = None if r.chip_id_masked else r.chip_id.hex()
    platform_identity(b, policy, chip, r.chip_id_masked)


def tdx_checks(b: ReportBuilder, v: VerifiedTdx, policy: Policy) -> None:
    body = v.quote.body
    tud = body.td_attributes & TD_ATTR_TUD_MASK
    problems = [] if not tud or policy.allow_debug else ["TD attributes allow debugging"]
    req = "debug ALLOWED by the policy (allow_debug)" if policy.allow_debug else "TUD bits off"
    _record(b, "cpu.debug", problems, f"TD attributes 0x{body.td_attributes:016x}", req)
    seen = f"TEE_TCB_SVN {body.tee_tcb_svn.hex()}"
    minimum = policy.tdx_min_tee_tcb_svn
    if minimum is None:
        b.skipped("cpu.tcb", "the policy sets no TCB minimum", seen)
    else:
        low = [i for i in range(16) if body.tee_tcb_svn[i] < minimum[i]]
        problems = [f"TEE_TCB_SVN components {low} are below the minimum"] if low else []
        _record(b, "cpu.tcb", problems, seen, f"≥ {minimum.hex()} component-wise")
    pins = [("launch measurement (MRTD)", body.mr_td.hex(), policy.allowed_measurements)]
    pins += [(f"RTMR{i}", body.rtmrs[i].hex(), policy.tdx_allowed_rtmrs.get(i)) for i in range(4)]
    pins.append(("MRSEAM", body.mr_seam.hex(), policy.tdx_allowed_mr_seam))
    _pinned(b, "cpu.measurement", pins, "launch measurement")
    platform_identity(b, policy, v.pck_info.ppid.hex(), False)


def tdx_collateral(
    b: ReportBuilder,
    v: VerifiedTdx,
    policy: Policy,
    col: Collateral,
    roots: Sequence[Root],
    now: datetime,
) -> str:
    """Records cpu.collateral; returns the TCB status (or why there is none)."""
    chains = col.intel_signing_chains
    fmspc = v.pck_info.fmspc.hex()
    info, why = intel.find_doc(
        col.tdx_tcb_infos, intel.TCB_INFO, {"id": "TDX", "fmspc": fmspc}, chains, roots, now
    )
    qe, qwhy = intel.find_doc(
        col.tdx_qe_identities, intel.QE_IDENTITY, {"id": "TD_QE"}, chains, roots, now
    )
    accepted = ", ".join(sorted(policy.tdx_accepted_tcb_status))
    if info is None or qe is None:
        missing = "TCB info for FMSPC " + fmspc if info is None else "TD_QE identity"
        reasons = "; ".join((why if info is None else qwhy) or ["none supplied"])
        b.skipped("cpu.collateral", f"no verified, current {missing} ({reasons})", "", accepted)
        return f"not evaluated: no verified {missing}"
    try:
        ev = tcb_status.evaluate(v, info, qe)
    except VerifyError as exc:
        b.failed("cpu.collateral", exc, "", accepted, [f"TCB: {exc}"])
        return "refused"
    problems = []
    if ev.status not in policy.tdx_accepted_tcb_status:
        adv = f" ({', '.join(ev.advisory_ids)})" if ev.advisory_ids else ""
        problems.append(f"TDX TCB status is {ev.status}{adv}; the policy accepts {accepted}")
    _record(b, "cpu.collateral", problems, ev.describe(), f"status in {accepted}")
    return ev.status


def revocation(
    b: ReportBuilder,
    cid: str,
    paths: Sequence[Sequence[x509.Certificate]],
    col: Collateral,
    now: datetime,
) -> None:
    crls, unparsed = col.parsed_crls
    responses, bad_ocsp = col.parsed_ocsp
    unparsed = (*unparsed, *bad_ocsp)
    results = [crl.check_chain(p, crls, now, responses) for p in paths]
    seen = " | ".join(r.describe() for r in results)
    revoked = [c for r in results for c in r.revoked]
    unchecked = [c for r in results for c in r.unchecked]
    if revoked:
        problems = [f"{c.subject} is revoked ({c.why})" for c in revoked]
        b.failed(cid, ChainError("; ".join(problems)), seen, "no certificate revoked", problems)
    elif not any(r.certs for r in results):
        b.skipped(cid, "no certificate in the chain publishes a CRL or an OCSP responder", seen)
    elif unchecked:
        why = "; ".join(f"{c.subject}: {c.why}" for c in unchecked)
        extra = f" (collateral that does not parse: {'; '.join(unparsed)})" if unparsed else ""
        b.skipped(cid, f"revocation not checked for {why}{extra}", seen, "current CRLs / OCSP")
    else:
        b.passed(cid, seen, "current CRLs / OCSP responses, no certificate revoked")


def gpu_measurements(
    b: ReportBuilder,
    gpus: Sequence[VerifiedGpu],
    policy: Policy,
    rim_root: x509.Certificate | None,
    now: datetime,
) -> None:
    pinned = bool(
        policy.gpu_allowed_measurements
        or policy.gpu_allowed_driver_versions is not None
        or policy.gpu_allowed_vbios_versions is not None
    )
    if not gpus:
        return
    seen = "; ".join(
        f"GPU {g.index}: driver {g.report.driver_version}, VBIOS {g.report.vbios_version}, "
        f"{len(g.measurements)} measurements"
        for g in gpus
    )
    if not policy.gpu_rims and not pinned:
        b.skipped("gpu.measurements", "no RIM files or pinned GPU values in the policy", seen)
        return
    problems: list[str] = []
    required = []
    if policy.gpu_rims:
        required.append(f"as in the policy's {len(policy.gpu_rims)} RIMs")
        problems += _rim_problems(gpus, policy.gpu_rims, rim_root, now)
    if pinned:
        required.append("pinned values")
        problems += _pinned_gpu_problems(gpus, policy)
    _record(b, "gpu.measurements", problems, seen, "; ".join(required))


def rim_signing_paths(
    gpus: Sequence[VerifiedGpu],
    rim_files: Sequence[bytes],
    rim_root: x509.Certificate | None,
    now: datetime,
) -> list[tuple[x509.Certificate, ...]]:
    """The verified signing paths of the RIMs that apply to these GPUs (their driver and VBIOS),
    so their signers' revocation is checked with the GPUs' (gpu.revocation). A RIM that does not
    verify is left to gpu.measurements, which reports it."""
    if rim_root is None or not rim_files:
        return []
    rims = []
    for data in rim_files:
        with contextlib.suppress(VerifyError):
            rims.append(rim.verify_rim(data, rim_root, now))
    used: dict[str, tuple[x509.Certificate, ...]] = {}
    for g in gpus:
        for version in (g.report.driver_version, g.report.vbios_version):
            chosen = rim.select(rims, version)
            if chosen is not None and chosen.chain:
                used[chosen.sha256] = chosen.chain
    return list(used.values())


def _rim_problems(
    gpus: Sequence[VerifiedGpu],
    rim_files: Sequence[bytes],
    rim_root: x509.Certificate | None,
    now: datetime,
) -> list[str]:
    if rim_root is None:
        return ["no NVIDIA RIM root is configured to verify the policy's RIMs"]
    rims, problems = [], []
    for i, data in enumerate(rim_files):
        try:
            rims.append(rim.verify_rim(data, rim_root, now))
        except VerifyError as exc:
            problems.append(f"RIM #{i}: {exc}")
    for g in gpus:
        driver = rim.select(rims, g.report.driver_version)
        vbios = rim.select(rims, g.report.vbios_version)
        if driver is None:
            problems.append(f"GPU {g.index}: no valid RIM for driver {g.report.driver_version}")
        if vbios is None:
            problems.append(f"GPU {g.index}: no valid RIM for VBIOS {g.report.vbios_version}")
        if driver is not None and vbios is not None:
            problems += [f"GPU {g.index}: {p}" for p in rim.compare(g.report, driver, vbios)]
    return problems


def _pinned_gpu_problems(gpus: Sequence[VerifiedGpu], policy: Policy) -> list[str]:
    problems = []
    for g in gpus:
        have = g.measurements
        for idx, allowed in sorted(policy.gpu_allowed_measurements.items()):
            value = have.get(idx)
            if value is None:
                problems.append(f"GPU {g.index} has no measurement {idx}")
            elif value not in allowed:
                problems.append(f"GPU {g.index} measurement {idx} {_short(value)} is not allowed")
        dv, vb = g.report.driver_version, g.report.vbios_version
        if (
            policy.gpu_allowed_driver_versions is not None
            and dv not in policy.gpu_allowed_driver_versions
        ):
            problems.append(f"GPU {g.index} driver {dv} is not allowed")
        if (
            policy.gpu_allowed_vbios_versions is not None
            and vb not in policy.gpu_allowed_vbios_versions
        ):
            problems.append(f"GPU {g.index} VBIOS {vb} is not allowed")
    return problems


def models(b: ReportBuilder, served: Sequence[pb.ModelDigest], policy: Policy) -> None:
    seen = ", ".join(f"{m.name} {_short(m.sha256.hex())}" for m in served) or "no models"
    pins = policy.allowed_model_digests
    checked = [m for m in served if m.name in pins]
    if not checked:
        b.skipped("models.digests", "no served model's digest is pinned by the policy", seen)
        return
    problems = [
        f"model {m.name} weights {_short(m.sha256.hex())} are not an allowed digest"
        for m in checked
        if m.sha256.hex() not in pins[m.name]
    ]
    _record(b, "models.digests", problems, seen, "pinned: " + ", ".join(m.name for m in checked))


def root_real(b: ReportBuilder, root: Root) -> None:
    if root.simulated:
        b.skipped(
            "root.real",
            "SIMULATED TEE root accepted by the policy: no hardware protection at all",
            root.name,
        )
    else:
        b.passed("root.real", root.name, "a pinned vendor root")
