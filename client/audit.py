"""The auditor: recompute everything from the gateway's public log, trusting none of it (ADR 12).

It replays every entry through the ledger rules (verify.ledger_rules) — receipts verified against
the key their evidence attests, deposits and price schedules against the log key, withdrawals
against the account's logged key — and so recomputes every balance from the log alone; then it
checks the ledger view and the balances the gateway serves against that, posting by posting.

Problems, each by name with its evidence (a rule the log breaks carries the rule's name):
  checkpoint_signature    the checkpoint is not signed by the log key the auditor was given
  history_rewritten       not consistent with the last checkpoint this auditor verified (state file)
  log_root_mismatch       the entries served do not hash to the checkpoint's root, or are missing
  forged_receipt          a receipt that does not verify with the key its evidence attests
  malformed_entry, unknown_entry_kind, bad_signature, withdrawal_unauthorized,
  account_key_conflict, duplicate_reference, job_logged_twice, no_price_schedule,
  schedule_retroactive, negative_balance, amount_out_of_range       an entry breaks that rule
  reward_missing          a verified receipt without its reward in the ledger
  reward_without_receipt  a reward posting without a verified receipt
  job_credited_twice      a job rewarded more than once
  reward_mismatch         a reward whose accounts or amounts differ from the rules at its index
  transfer_missing / transfer_without_entry / transfer_mismatch     the same for deposits and
                          withdrawals (e.g. money moved under the kind `deposit` with no entry)
  unknown_transfer_kind   a posting of a kind the rules do not know
  unbalanced_transfer     a transfer whose legs do not sum to zero
  ledger_out_of_order     postings served out of the log's order
  balance_mismatch / balance_missing   a served balance differs from the log's, or is absent
  balances_do_not_sum_to_zero
  unreleased_worker       a job ran on a worker whose software no release allowed at the job's log
                          position: none signed by a trusted release key, logged before the job,
                          unrevoked there and valid at the evidence's time (ADR 10)
The audit could not finish (exit 3, unless a discrepancy was found too):
  gateway_unreachable     the gateway does not answer in time
  gateway_misbehaving     an answer that does not parse, a page that does not advance or is
                          larger than asked, a checkpoint that does not parse
  audit_limit             the audit hit one of its bounds (AuditLimits)
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from ccgw.client.audit_fetch import AuditLimits, AuditStop, Fetcher, LedgerCursor
from ccgw.client.audit_replay import Replay
from ccgw.client.releases import LogIdentity
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc
from ccgw.verify import binding, checkpoint, merkle
from ccgw.verify import log_entries as le
from ccgw.verify.attestation.bundle import VerifiedWorker, verify_bundle
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.errors import LogError, MalformedError, VerifyError
from ccgw.verify.receipts import verify_receipt
from ccgw.verify.release.manifest import ReleaseKey
from ccgw.verify.release.policy import (
    LoggedRelease,
    LoggedRevocation,
    ReleaseView,
    WorkerClaims,
    decide,
    release_view,
)

__all__ = ["AuditLimits", "Auditor", "LogIdentity", "Problem", "Report", "format_report"]

INCOMPLETE = frozenset({"gateway_unreachable", "gateway_misbehaving", "audit_limit"})
PROBLEM_KINDS = INCOMPLETE | {
    "checkpoint_signature",
    "history_rewritten",
    "log_root_mismatch",
    "forged_receipt",
    "malformed_entry",
    "unknown_entry_kind",
    "bad_signature",
    "withdrawal_unauthorized",
    "account_key_conflict",
    "duplicate_reference",
    "job_logged_twice",
    "no_price_schedule",
    "schedule_retroactive",
    "negative_balance",
    "amount_out_of_range",
    "reward_missing",
    "reward_without_receipt",
    "job_credited_twice",
    "reward_mismatch",
    "transfer_missing",
    "transfer_without_entry",
    "transfer_mismatch",
    "unknown_transfer_kind",
    "unbalanced_transfer",
    "ledger_out_of_order",
    "balance_mismatch",
    "balance_missing",
    "balances_do_not_sum_to_zero",
    "unreleased_worker",
}
_NOT_FOUND = frozenset({grpc.StatusCode.NOT_FOUND})


@dataclass(frozen=True)
class Problem:
    kind: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    tree_size: int = 0
    root: str = ""
    entries: int = 0  # entries replayed (checkpointed and past it)
    receipts_verified: int = 0
    unanchored: int = 0  # entries past the latest checkpoint (anchored by a later audit)
    ledger_entries: int = 0
    balances: dict[str, int] = field(default_factory=dict)
    # Which release each verified job ran under (log index of its receipt → release, "" = none);
    # `releases_checked` False when the audit had no release key (then nothing is said).
    job_releases: dict[int, str] = field(default_factory=dict)
    releases_checked: bool = False
    releases_note: str = ""
    problems: list[Problem] = field(default_factory=list)
    problems_dropped: int = 0
    problems_max: int = 1_000

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        """0 clean, 1 a discrepancy found, 3 the audit could not finish."""
        if not self.problems:
            return 0
        return 3 if all(p.kind in INCOMPLETE for p in self.problems) else 1

    def add(self, kind: str, detail: str, evidence: dict[str, Any] | None = None) -> None:
        if len(self.problems) >= self.problems_max and kind not in INCOMPLETE:
            self.problems_dropped += 1
            return
        self.problems.append(Problem(kind, detail, evidence or {}))


class Auditor:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        log_id: LogIdentity,
        policy: Policy,
        roots: RootStore,
        state_path: Path | None = None,
        limits: AuditLimits | None = None,
        release_keys: tuple[ReleaseKey, ...] = (),
        accept_unreleased: bool = False,
    ) -> None:
        """`release_keys`: report the release each job ran under and flag jobs of workers under
        no release (the default); without keys `accept_unreleased` must say so on purpose."""
        accept_unreleased = accept_unreleased or policy.accept_unreleased
        if not release_keys and not accept_unreleased and not policy.pins_software:
            raise ValueError(
                "no release key: give release_keys, a policy that pins measurements, or "
                "accept_unreleased=True"
            )
        self._release_keys = release_keys
        self._accept_unreleased = accept_unreleased
        self._releases: list[LoggedRelease] = []
        self._revocations: list[LoggedRevocation] = []
        self._view: ReleaseView | None = None
        self._stub = lgrpc.TransparencyLogStub(channel)
        self._id, self._roots, self._limits = log_id, roots, limits or AuditLimits()
        # Evidence is judged as of its own issue time: an audit runs long after admission.
        self._policy = replace(policy, max_evidence_age_s=10**9)
        self._state_path = state_path
        self._workers: dict[str, VerifiedWorker | None] = {}

    async def run(self) -> Report:
        rep = Report(problems_max=self._limits.problems_max)
        rep.releases_checked = bool(self._release_keys)
        if not self._release_keys:
            rep.releases_note = (
                "NOT CHECKED (--accept-unreleased-software)"
                if self._accept_unreleased
                else "not checked (no release key; the policy pins measurements)"
            )
        f = Fetcher(self._stub, self._limits)
        try:
            found = await self._checkpoint(f, rep)
            if found is not None:
                cp, cp_text = found
                await self._consistency(f, cp, cp_text, rep)
                pages = await f.account_pages()
                await self._replay(f, cp, Replay(self._id.public_raw, cp.size, pages, rep), rep)
                if rep.ok and self._state_path is not None:
                    state = {"size": cp.size, "root": cp.root.hex(), "checkpoint": cp_text}
                    self._state_path.write_text(json.dumps(state))
        except AuditStop as stop:
            rep.add(stop.kind, stop.detail)
        return rep

    async def _checkpoint(
        self, f: Fetcher, rep: Report
    ) -> tuple[checkpoint.Checkpoint, str] | None:
        resp = await f.call(self._stub.GetCheckpoint, lpb.GetCheckpointRequest(), "GetCheckpoint")
        assert resp is not None
        text = resp.checkpoint
        try:
            checkpoint.parse(text)
        except MalformedError as exc:
            raise AuditStop("gateway_misbehaving", f"checkpoint does not parse: {exc}") from None
        try:
            cp = checkpoint.verify(text, self._id.name, self._id.public_raw, self._id.origin)
        except LogError as exc:
            rep.add("checkpoint_signature", str(exc), {"checkpoint": text})
            return None
        rep.tree_size, rep.root = cp.size, cp.root.hex()
        return cp, text

    def _last_state(self) -> dict[str, Any] | None:
        if self._state_path is None or not self._state_path.exists():
            return None
        state = json.loads(self._state_path.read_text())
        if not isinstance(state, dict) or {"size", "root", "checkpoint"} - set(state):
            raise ValueError(f"audit state {self._state_path} is not an auditor's state file")
        return state

    async def _consistency(
        self, f: Fetcher, cp: checkpoint.Checkpoint, cp_text: str, rep: Report
    ) -> None:
        last = self._last_state()
        if last is None:
            return
        ev = {"previous_checkpoint": last["checkpoint"], "new_checkpoint": cp_text}
        if cp.size < last["size"]:
            rep.add("history_rewritten", "the log shrank", ev)
            return
        proof: list[bytes] = []
        if last["size"] and cp.size != last["size"]:
            req = lpb.GetConsistencyProofRequest(first=last["size"], second=cp.size)
            resp = await f.call(self._stub.GetConsistencyProof, req, "GetConsistencyProof")
            assert resp is not None
            proof = list(resp.hashes)
        try:
            if last["size"]:
                old = bytes.fromhex(last["root"])
                merkle.verify_consistency(last["size"], cp.size, old, cp.root, proof)
        except LogError as exc:
            rep.add("history_rewritten", str(exc), ev)

    async def _replay(
        self, f: Fetcher, cp: checkpoint.Checkpoint, replay: Replay, rep: Report
    ) -> None:
        cursor = LedgerCursor(f)
        index = 0
        while index < cp.size + self._limits.entries_max:
            end = index + self._limits.page_entries
            page = await f.entries(index, min(end, cp.size) if index < cp.size else end)
            if not page:
                if index < cp.size:
                    rep.add("log_root_mismatch", f"entries {index}..{cp.size - 1} are not served")
                break
            for e in page:
                if e.index < index:
                    raise AuditStop("gateway_misbehaving", f"entry {e.index} served again")
                if e.index != index:
                    rep.add("log_root_mismatch", f"entries {index}..{e.index - 1} are missing")
                    replay.gap(index, e.index)
                index = e.index + 1
                self._note_release(e)
                derived = replay.entry(e.index, e, await self._receipt_ok(f, e, rep))
                replay.compare(e.index, derived, await cursor.upto(e.index))
        else:
            raise AuditStop("audit_limit", f"more than {self._limits.entries_max} entries")
        rep.entries, rep.unanchored = index, max(0, index - cp.size)
        await self._stray_postings(f, cursor, replay, index)
        rep.ledger_entries = cursor.read
        replay.finish(lambda root, n: self._root_check(cp, root, n, rep))
        rep.balances = dict(sorted(replay.ledger.balances.items()))

    async def _stray_postings(
        self, f: Fetcher, cursor: LedgerCursor, replay: Replay, size: int
    ) -> None:
        """Postings past the last entry read: bogus unless the log grew meanwhile."""
        nxt = await cursor.peek()
        if nxt is None:
            return
        if nxt.log_index >= size and await f.entries(nxt.log_index, nxt.log_index + 1):
            return  # the log grew since; a later audit checks those
        replay.stray(await cursor.upto(nxt.log_index), size)

    def _root_check(self, cp: checkpoint.Checkpoint, got: bytes, n: int, rep: Report) -> None:
        if n != cp.size or got != cp.root:
            rep.add(
                "log_root_mismatch",
                f"{n} entries served hash to {got.hex() or '-'}, the checkpoint says {cp.size} "
                f"entries with root {cp.root.hex()}",
            )

    async def _receipt_ok(self, f: Fetcher, e: lpb.LogEntry, rep: Report) -> bool:
        """False only for a receipt entry whose signature or evidence fails."""
        if e.kind != le.ReceiptBody.KIND:
            return True
        try:
            body = le.parse(le.Entry(e.kind, bytes(e.body)))
        except MalformedError:
            return True  # the rules name it malformed_entry
        assert isinstance(body, le.ReceiptBody)
        ev = {"index": e.index, "evidence_sha256": body.evidence_sha256}
        w = await self._worker(f, body.evidence_sha256)
        if w is None:
            rep.add("forged_receipt", "the receipt's evidence is missing or does not verify", ev)
            return False
        try:
            r = verify_receipt(body.receipt_jws, w.keys.receipt_ed25519, w.key_id)
        except VerifyError as exc:
            rep.add("forged_receipt", str(exc), ev)
            return False
        if (
            r.evidence_sha256 != body.evidence_sha256
            or w.models.get(r.model, b"").hex() != r.model_digest
        ):
            rep.add("forged_receipt", "receipt does not match its evidence", ev)
            return False
        rep.receipts_verified += 1
        self._job_release(e.index, r.job_id, w, rep)
        return True

    def _note_release(self, e: lpb.LogEntry) -> None:
        """Collect release and revocation entries in log order (the rules name malformed ones)."""
        if e.kind not in (le.ReleaseBody.KIND, le.RevocationBody.KIND):
            return
        try:
            body = le.parse(le.Entry(e.kind, bytes(e.body)))
        except MalformedError:
            return
        if isinstance(body, le.ReleaseBody):
            self._releases.append(LoggedRelease(body.document, e.index))
        elif isinstance(body, le.RevocationBody):
            self._revocations.append(LoggedRevocation(body.document, e.index))
        self._view = None

    def _job_release(self, index: int, job: str, w: VerifiedWorker, rep: Report) -> None:
        """The release the job's worker ran under, as the log stood at the job's receipt."""
        if not self._release_keys:
            return
        if self._view is None or self._view.checkpoint_size != index:
            # every release seen so far is below `index`: the view at the job's position
            self._view = release_view(self._releases, self._revocations, self._release_keys, index)
        when = dt.datetime.fromtimestamp(w.issued_at_ms / 1000, dt.UTC)
        try:
            accepted = decide(WorkerClaims.of(w), self._view, when)
        except VerifyError as exc:
            rep.job_releases[index] = ""
            rep.add(
                "unreleased_worker",
                f"job {job} at log index {index}: {exc}",
                {"index": index, "job_id": job, "measurement": w.measurement},
            )
            return
        rep.job_releases[index] = accepted.describe()

    async def _worker(self, f: Fetcher, digest: str) -> VerifiedWorker | None:
        if digest in self._workers:
            return self._workers[digest]
        if len(self._workers) >= self._limits.evidence_bundles_max:
            raise AuditStop("audit_limit", f"more than {self._limits.evidence_bundles_max} bundles")
        req = lpb.GetEvidenceRequest(evidence_sha256=digest)
        resp = await f.call(self._stub.GetEvidence, req, "GetEvidence", expected=_NOT_FOUND)
        w = None
        if resp is not None:
            try:
                bundle = cpb.EvidenceBundle.FromString(resp.bundle)
                if binding.evidence_sha256(bundle) == digest:
                    when = dt.datetime.fromtimestamp(bundle.issued_at_ms / 1000, dt.UTC)
                    w = verify_bundle(bundle, self._policy, self._roots, when)
            except (VerifyError, ValueError, OverflowError):
                w = None
        self._workers[digest] = w
        return w


def format_report(rep: Report, jobs: bool = False) -> str:
    lines = [
        f"tree size {rep.tree_size}, root {rep.root}",
        f"entries {rep.entries} (+{rep.unanchored} past the checkpoint), receipts verified "
        f"{rep.receipts_verified}, ledger postings {rep.ledger_entries}",
        "balances: " + ", ".join(f"{k}={v}" for k, v in sorted(rep.balances.items())),
    ]
    if rep.releases_checked:
        counts: dict[str, int] = {}
        for rel in rep.job_releases.values():
            counts[rel or "NO RELEASE"] = counts.get(rel or "NO RELEASE", 0) + 1
        lines.append(
            "jobs by release: "
            + ("; ".join(f"{n} under {r}" for r, n in sorted(counts.items())) or "no jobs")
        )
        if jobs:
            lines += [
                f"job at log index {i}: {r or 'NO RELEASE'}"
                for i, r in sorted(rep.job_releases.items())
            ]
    else:
        lines.append(f"releases: {rep.releases_note}")
    lines += [
        f"PROBLEM {p.kind}: {p.detail}"
        + (f" evidence={json.dumps(p.evidence)}" if p.evidence else "")
        for p in rep.problems
    ]
    if rep.problems_dropped:
        lines.append(f"... and {rep.problems_dropped} more problems")
    if rep.ok:
        lines.append("AUDIT OK")
    elif rep.exit_code == 3:
        lines.append(f"AUDIT INCOMPLETE ({len(rep.problems)} problems)")
    else:
        lines.append(f"AUDIT FAILED ({len(rep.problems)} problems)")
    return "\n".join(lines)
