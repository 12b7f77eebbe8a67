"""Validate verified evidence against a Policy (the third layer: parse → verify → validate).

Each function appends a sentence per failed rule to `problems`, so a refusal lists everything
that is wrong, not only the first thing. Rules:

SEV-SNP: debug forbidden unless allowed; launch MEASUREMENT pinned; chip id pinned (a masked chip
id cannot satisfy a pin); reported TCB ≥ the minimum per component (FMC on Turin); guest SVN ≥
minimum; SMT enabled on the platform only when allowed; a migration agent only when allowed; VMPL ≤
maximum; HOST_DATA pinned.
TDX: debug forbidden unless allowed; MRTD pinned; PPID pinned; RTMR0–3 and MRSEAM pinned;
TEE_TCB_SVN ≥ minimum component-wise; TCB status from collateral among the accepted ones (and
collateral required, with a verified signature, when the policy says so).
GPU: at least one GPU in confidential-computing mode when required (NVML serves attestation
reports only in CC mode, so a verified report is that proof); pinned measurement indices present
with allowed values; driver and VBIOS versions allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ccgw.verify.attestation import collateral
from ccgw.verify.attestation.nvidia import VerifiedGpu
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import Root
from ccgw.verify.attestation.sevsnp import TcbVersion, VerifiedSnp
from ccgw.verify.attestation.tdx import VerifiedTdx
from ccgw.verify.errors import PolicyError

NO_COLLATERAL = "not evaluated: no TCB collateral supplied"


def _short(h: str) -> str:
    return f"{h[:16]}…"


def _common(
    policy: Policy,
    debug: bool,
    measurement: str,
    platform_id: str | None,
    what: str,
    problems: list[str],
) -> None:
    if debug and not policy.allow_debug:
        problems.append(f"{what} allows debugging")
    if policy.allowed_measurements is not None and measurement not in policy.allowed_measurements:
        problems.append(f"launch measurement {_short(measurement)} is not allowed")
    if platform_id is None:
        return
    if policy.allowed_platform_ids is not None and platform_id not in policy.allowed_platform_ids:
        problems.append(f"platform {_short(platform_id)} is not a registered machine")


def validate_snp(v: VerifiedSnp, policy: Policy, problems: list[str]) -> None:
    r = v.report
    if r.chip_id_masked and policy.allowed_platform_ids is not None:
        problems.append("chip id is masked, so the platform allow-list cannot be checked")
    chip = None if r.chip_id_masked else r.chip_id.hex()
    _common(policy, r.debug_allowed, r.measurement.hex(), chip, "guest policy", problems)
    tcb = TcbVersion(r.reported_tcb.raw, v.product == "turin").components()
    for comp, minimum in sorted(policy.snp_min_tcb.items()):
        have = tcb.get(comp)
        if have is None:
            continue  # fmc on a non-Turin product
        if have < minimum:
            problems.append(f"reported TCB {comp} SVN {have} is below the minimum {minimum}")
    if r.guest_svn < policy.snp_min_guest_svn:
        problems.append(f"guest SVN {r.guest_svn} is below the minimum {policy.snp_min_guest_svn}")
    if r.smt_enabled and not policy.snp_allow_smt:
        problems.append("SMT is enabled on the platform and the policy forbids it")
    if r.migrate_ma_allowed and not policy.snp_allow_migration_agent:
        problems.append("guest policy allows a migration agent")
    if policy.snp_max_vmpl is not None and r.vmpl > policy.snp_max_vmpl:
        problems.append(
            f"report is from VMPL {r.vmpl}; the policy allows at most {policy.snp_max_vmpl}"
        )
    if (
        policy.snp_allowed_host_data is not None
        and r.host_data.hex() not in policy.snp_allowed_host_data
    ):
        problems.append(f"host data {_short(r.host_data.hex())} is not allowed")


def validate_tdx(
    v: VerifiedTdx, policy: Policy, roots: list[Root], now: datetime, problems: list[str]
) -> str:
    """Returns the TCB status (or that it was not evaluated)."""
    b = v.quote.body
    _common(policy, b.debug, b.mr_td.hex(), v.pck_info.ppid.hex(), "TD attributes", problems)
    for i, allowed in sorted(policy.tdx_allowed_rtmrs.items()):
        if b.rtmrs[i].hex() not in allowed:
            problems.append(f"RTMR{i} {_short(b.rtmrs[i].hex())} is not allowed")
    if policy.tdx_allowed_mr_seam is not None and b.mr_seam.hex() not in policy.tdx_allowed_mr_seam:
        problems.append(f"TDX module MRSEAM {_short(b.mr_seam.hex())} is not allowed")
    if policy.tdx_min_tee_tcb_svn is not None:
        low = [i for i in range(16) if b.tee_tcb_svn[i] < policy.tdx_min_tee_tcb_svn[i]]
        if low:
            problems.append(f"TEE_TCB_SVN components {low} are below the minimum")
    if policy.tdx_tcb_info is None:
        if policy.tdx_require_collateral:
            problems.append("policy requires TDX TCB collateral; none was supplied")
        return NO_COLLATERAL
    try:
        ev = collateral.evaluate(
            v,
            policy.tdx_tcb_info,
            policy.tdx_qe_identity,
            policy.tdx_collateral_chain_pem,
            roots,
            now,
        )
    except PolicyError as exc:
        problems.extend(f"TCB: {p}" for p in exc.problems)
        return "refused"
    if ev.status not in policy.tdx_accepted_tcb_status:
        advisories = f" ({', '.join(ev.advisory_ids)})" if ev.advisory_ids else ""
        problems.append(
            f"TDX TCB status is {ev.status}{advisories}; the policy accepts "
            f"{', '.join(sorted(policy.tdx_accepted_tcb_status))}"
        )
    if policy.tdx_require_collateral and not ev.verified:
        problems.append("TDX TCB collateral signature is not verified (no signing chain supplied)")
    return ev.describe()


def validate_gpus(gpus: Sequence[VerifiedGpu], policy: Policy, problems: list[str]) -> None:
    if policy.require_gpu and not gpus:
        problems.append("policy requires a GPU in confidential-computing mode; the bundle has none")
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
