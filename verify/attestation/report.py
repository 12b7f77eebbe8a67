"""The attestation report: what was verified about one worker's evidence, check by check.

Every named check ends in one status:
- pass: checked, and it holds;
- fail: checked, and it does not hold — always a refusal;
- skip: not checked (nothing to check against, collateral missing, not reached because an earlier
  check failed). A skip is never a pass: it is shown as a skip and does not count towards the score;
  when the policy enforces the check, a skip is a refusal too.

Each check carries the value seen, what the policy required, and whether the policy enforces it.
Checks are grouped in three tiers (hardware, binding, supply chain); the score is passes / checks.
`CHECKS` is the registry: adding a check means adding a spec here and recording its result where
it is evaluated (verify.attestation.bundle); `Policy.enforces(id)` says which checks a skip refuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ccgw.verify.errors import PolicyError, VerifyError


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 (a status, not a password)
    FAIL = "fail"
    SKIP = "skip"


class Tier(StrEnum):
    HARDWARE = "hardware"
    BINDING = "binding"
    SUPPLY_CHAIN = "supply chain"


@dataclass(frozen=True)
class CheckSpec:
    id: str
    tier: Tier
    title: str
    always_enforced: bool = False  # a check no policy may skip


_H, _B, _S = Tier.HARDWARE, Tier.BINDING, Tier.SUPPLY_CHAIN
CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("evidence.freshness", _H, "evidence is fresh (age, not from the future)", True),
    CheckSpec("evidence.nonce", _H, "evidence answers the client's own nonce"),
    CheckSpec("cpu.report", _H, "CPU report structure", True),
    CheckSpec("cpu.chain", _H, "CPU certificate chain to a pinned vendor root", True),
    CheckSpec("cpu.signature", _H, "CPU report signature", True),
    CheckSpec("cpu.debug", _H, "debug off, guest policy allowed", True),
    CheckSpec("cpu.paravisor", _H, "the guest's own CPU report, no paravisor in between"),
    CheckSpec("cpu.tcb", _H, "TCB at or above the policy minimum"),
    CheckSpec("cpu.collateral", _H, "TCB status from signed vendor collateral"),
    CheckSpec("cpu.revocation", _H, "CPU certificates not revoked (CRLs)"),
    CheckSpec("gpu.report", _H, "GPU report structure"),
    CheckSpec("gpu.chain", _H, "GPU certificate chain to the NVIDIA root"),
    CheckSpec("gpu.signature", _H, "GPU report signature"),
    CheckSpec("gpu.nonce", _H, "GPU report answers the evidence nonce"),
    CheckSpec("gpu.cc_mode", _H, "GPU in confidential-computing mode"),
    CheckSpec("gpu.revocation", _H, "GPU certificates not revoked (CRLs)"),
    CheckSpec("binding.keys", _B, "CPU report_data binds the worker's keys", True),
    CheckSpec("binding.cpu_gpu", _B, "CPU report_data binds the GPU evidence"),
    CheckSpec("cpu.measurement", _S, "launch measurement pinned"),
    CheckSpec("gpu.measurements", _S, "GPU measurements as reference values (RIMs)"),
    CheckSpec("models.digests", _S, "model weight digests pinned"),
    CheckSpec("release.inclusion", _S, "worker release included in a release log"),
    CheckSpec("platform.identity", _S, "platform identity on the allow-list"),
    CheckSpec("root.real", _S, "a real vendor root, not the simulated TEE"),
)
SPECS: Mapping[str, CheckSpec] = {c.id: c for c in CHECKS}
CHECK_IDS = frozenset(SPECS)
ALWAYS_ENFORCED = frozenset(c.id for c in CHECKS if c.always_enforced)


@dataclass(frozen=True)
class Check:
    id: str
    status: Status
    seen: str = ""
    required: str = ""
    enforced: bool = False
    detail: tuple[str, ...] = ()  # why it failed / why it was skipped, one sentence each
    error: VerifyError | None = field(default=None, compare=False, repr=False)

    @property
    def spec(self) -> CheckSpec:
        return SPECS[self.id]

    @property
    def refuses(self) -> bool:
        return self.status is Status.FAIL or (self.status is Status.SKIP and self.enforced)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tier": self.spec.tier.value,
            "title": self.spec.title,
            "status": self.status.value,
            "seen": self.seen,
            "required": self.required,
            "enforced": self.enforced,
            "detail": list(self.detail),
        }


@dataclass(frozen=True)
class AttestationReport:
    checks: tuple[Check, ...]  # in CHECKS order, every check exactly once
    verified_at: str = ""  # ISO time the verifier used
    platform: str = ""
    evidence_sha256: str = ""
    collateral_sources: tuple[str, ...] = ()
    # Added by the SDK when an answer was verified: the receipt verdict.
    receipt: str = ""
    evaluation_order: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def check(self, check_id: str) -> Check:
        return next(c for c in self.checks if c.id == check_id)

    @property
    def trusted(self) -> bool:
        return not any(c.refuses for c in self.checks)

    @property
    def refusals(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.refuses)

    @property
    def score(self) -> tuple[int, int]:
        return sum(c.status is Status.PASS for c in self.checks), len(self.checks)

    def counts(self) -> dict[str, int]:
        return {s.value: sum(c.status is s for c in self.checks) for s in Status}

    def with_receipt(self, verdict: str) -> AttestationReport:
        from dataclasses import replace

        return replace(self, receipt=verdict)

    def to_dict(self) -> dict[str, Any]:
        passed, total = self.score
        return {
            "trusted": self.trusted,
            "score": {"passed": passed, "total": total},
            "counts": self.counts(),
            "verified_at": self.verified_at,
            "platform": self.platform,
            "evidence_sha256": self.evidence_sha256,
            "collateral_sources": list(self.collateral_sources),
            "receipt": self.receipt,
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def render(self, title: str = "", verdict: str = "") -> str:
        """Human-readable, grouped by tier, with the score (and TRUSTED / REFUSED unless the
        caller names another verdict)."""
        passed, total = self.score
        verdict = verdict or ("TRUSTED" if self.trusted else "REFUSED")
        lines = [f"{title or 'attestation'}: {verdict}  score {passed}/{total} passed"]
        for tier in Tier:
            lines.append(f"  [{tier.value}]")
            for c in self.checks:
                if c.spec.tier is not tier:
                    continue
                mark = {Status.PASS: "PASS", Status.FAIL: "FAIL", Status.SKIP: "skip"}[c.status]
                enf = "enforced" if c.enforced else "optional"
                lines.append(f"    {mark:4}  {c.id:<20} {c.spec.title} ({enf})")
                if c.seen:
                    lines.append(f"          seen:     {c.seen}")
                if c.required:
                    lines.append(f"          required: {c.required}")
                lines.extend(f"          - {d}" for d in c.detail)
        if self.receipt:
            lines.append(f"  receipt: {self.receipt}")
        return "\n".join(lines)

    def refusal_error(self) -> VerifyError:
        """The exception a refusal raises: the first failure that is not a policy verdict keeps its
        type (malformed, chain, signature, binding, freshness …); otherwise one PolicyError lists
        every failed check and every enforced skip."""
        for c in self.checks_in_order():
            if (
                c.status is Status.FAIL
                and c.error is not None
                and not isinstance(c.error, PolicyError)
            ):
                return c.error
        problems: list[str] = []
        for c in self.checks_in_order():
            if c.status is Status.FAIL:
                problems.extend(c.detail or (f"{c.id} failed",))
            elif c.refuses:
                why = "; ".join(c.detail) or "not checked"
                problems.append(f"{c.id} was skipped ({why}) and the policy enforces it")
        return PolicyError(problems)

    def checks_in_order(self) -> Iterable[Check]:
        """Checks in the order they were evaluated (the report lists them in tier order)."""
        order = {cid: i for i, cid in enumerate(self.evaluation_order)}
        return sorted(self.checks, key=lambda c: order.get(c.id, len(order)))


class ReportBuilder:
    """Collects check results while verify_bundle runs; `build` fills in every check that was not
    reached as a skip naming why."""

    def __init__(self, enforces: Mapping[str, bool]) -> None:
        self._enforces = enforces
        self._results: dict[str, Check] = {}
        self._blocked: str = ""

    def has(self, check_id: str) -> bool:
        return check_id in self._results

    def status(self, check_id: str) -> Status | None:
        c = self._results.get(check_id)
        return c.status if c else None

    def _put(self, check: Check) -> None:
        if check.id not in SPECS:
            raise KeyError(f"unknown check {check.id}")
        self._results[check.id] = check

    def passed(self, check_id: str, seen: str = "", required: str = "") -> None:
        self._put(Check(check_id, Status.PASS, seen, required, self._enforces[check_id]))

    def failed(
        self,
        check_id: str,
        error: VerifyError,
        seen: str = "",
        required: str = "",
        detail: Iterable[str] = (),
    ) -> None:
        lines = tuple(detail) or (str(error),)
        self._put(
            Check(check_id, Status.FAIL, seen, required, self._enforces[check_id], lines, error)
        )
        if not self._blocked:
            self._blocked = check_id

    def skipped(self, check_id: str, why: str, seen: str = "", required: str = "") -> None:
        self._put(Check(check_id, Status.SKIP, seen, required, self._enforces[check_id], (why,)))

    def replace_with_skip(self, check_id: str, why: str) -> None:
        """Downgrade a recorded result to a skip (keeping what was seen): for a check whose pass
        would claim more than was shown, e.g. a nonce the verifier did not choose."""
        old = self._results.pop(check_id)
        self.skipped(check_id, why, old.seen, old.required)

    def build(self, **meta: Any) -> AttestationReport:
        order = tuple(self._results)
        why = f"not reached: {self._blocked} failed" if self._blocked else "not reached"
        checks = tuple(
            self._results.get(spec.id)
            or Check(spec.id, Status.SKIP, enforced=self._enforces[spec.id], detail=(why,))
            for spec in CHECKS
        )
        return AttestationReport(checks=checks, evaluation_order=order, **meta)
