"""The gateway's side of disputes (ADR 14): re-check the evidence, log a `dispute` entry, and stop
routing to the worker it names.

Steps, each refusal one DisputeRefused (FAILED_PRECONDITION) or BadRequest naming what failed:
 1. the evidence parses (verify.disputes.Evidence) within limits.DISPUTE_FILE_BYTES_MAX;
 2. the job's receipt is in this gateway's log and is exactly the disputed one (a receipt of
    another job, or one never logged, is refused);
 3. the filer is the job's own account (a client disputing its own job, or the auditor's canary
    account) or an admin;
 4. the worker's receipt key comes from the evidence bundle stored under the receipt's evidence
    digest, verified again under this gateway's policy;
 5. verify.disputes.check_evidence: signature, commitments to input and answer, decoding
    parameters, model digest, an inconsistent verdict;
 6. re-execution: with a verifier engine for that model digest (`ccgw gateway --verifier-model`),
    the gateway scores the answer itself under its own tolerance (verify.consistency.tolerance_for
    the receipt's dtype and its own); the dispute is `reproduced` only if
    its own verdict is inconsistent, and refused if its own scoring finds the answer consistent.
    Without one, the dispute is logged as `claimed`: recorded for anyone to check, no money moves.
 7. the entry (operator-signed) goes through the ledger rules at append; a reproduced dispute's
    worker is suspended from routing at once (and on restart, from the log's uniques).
The prompt and the answer are held in memory for the check only: never logged, never stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Protocol

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.errors import BadRequest, DisputeRefused, NotFound, PermissionDenied
from ccgw.gateway.registry import Registry
from ccgw.gateway.store.base import Store
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.verify import binding
from ccgw.verify import log_entries as le
from ccgw.verify.attestation.bundle import VerifiedWorker
from ccgw.verify.consistency import JobInput, Tolerance, Verdict, tolerance_for
from ccgw.verify.disputes import CLAIMED, REPRODUCED, Evidence, check_evidence, dispute_entry
from ccgw.verify.errors import DisputeError, ReceiptError, VerifyError

log = structlog.get_logger("gateway.disputes")


class Scorer(Protocol):
    """A verifier engine (enclave.engine.Engine.score)."""

    dtype: str

    async def score(
        self, job: JobInput, answer: str, finish_reason: str, output_tokens: int, tol: Tolerance
    ) -> tuple[Verdict, object]: ...


class DisputeDesk:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        operator: Ed25519PrivateKey,
        verify_evidence: Callable[[cpb.EvidenceBundle, dt.datetime], VerifiedWorker],
        verifiers: Mapping[str, Scorer],
    ) -> None:
        self._store, self._registry, self._operator = store, registry, operator
        self._verify_evidence, self._verifiers = verify_evidence, verifiers

    async def load_suspensions(self) -> int:
        """Suspensions the log already decided (a restarted gateway keeps them)."""
        ids = await self._store.unique_keys("suspended_worker")
        self._registry.suspend(*ids)
        return len(ids)

    async def _worker(self, digest: str) -> VerifiedWorker:
        raw = await self._store.evidence(digest)
        if raw is None:
            raise DisputeRefused("the receipt's evidence is not stored at this gateway")
        try:
            bundle = cpb.EvidenceBundle.FromString(raw)
            if binding.evidence_sha256(bundle) != digest:
                raise DisputeRefused("the stored evidence does not hash to the receipt's digest")
            when = dt.datetime.fromtimestamp(bundle.issued_at_ms / 1000, dt.UTC)
            return self._verify_evidence(bundle, when)
        except (VerifyError, ValueError, OverflowError) as exc:
            raise DisputeRefused(f"the receipt's evidence does not verify: {exc}") from exc

    async def file(
        self, account: str, admin: bool, raw: bytes
    ) -> tuple[int, str, Verdict, str, bool]:
        """(log index, outcome, the logged verdict, worker id, already logged)."""
        try:
            ev = Evidence.from_json(raw)
            claims = le.ReceiptBody(ev.receipt_jws, ev.evidence_sha256).claims()
        except (DisputeError, ReceiptError) as exc:
            raise BadRequest(str(exc)) from exc
        found = await self._store.receipt(bytes.fromhex(claims.job_id))
        if found is None:
            raise NotFound("this gateway's log has no receipt for the disputed job")
        if found[0] != ev.receipt_jws:
            raise DisputeRefused("the log holds another receipt for this job (wrong receipt)")
        if not admin and account != claims.account:
            raise PermissionDenied("only the job's own account (or an admin) may dispute it")
        w = await self._worker(ev.evidence_sha256)
        try:
            receipt = check_evidence(ev, w.keys.receipt_ed25519, w.key_id)
        except DisputeError as exc:
            raise DisputeRefused(str(exc)) from exc
        if w.models.get(receipt.model, b"").hex() != receipt.model_digest:
            raise DisputeRefused("the receipt names weights its worker's evidence does not")
        outcome, verdict = CLAIMED, ev.verdict
        verifier = self._verifiers.get(ev.model_digest)
        if verifier is not None:
            tol = tolerance_for(receipt.dtype, verifier.dtype)
            try:
                mine, _ = await verifier.score(
                    ev.job, ev.answer, receipt.finish_reason, receipt.output_tokens, tol
                )
            except Exception as exc:  # the engine's own errors (e.g. too long) refuse it
                raise DisputeRefused(
                    f"the gateway's verifier cannot score this answer ({type(exc).__name__}: "
                    f"{str(exc)[:200]})"
                ) from exc
            if not mine.inconsistent:
                raise DisputeRefused(
                    f"the gateway's own scoring finds the answer {mine.status} "
                    f"(margin {tol.logit_margin} logits): not reproduced"
                )
            outcome, verdict = REPRODUCED, mine
        entry = dispute_entry(self._operator, ev, found[1], outcome, verdict, account)
        result = await self._store.append(entry)
        if outcome == REPRODUCED:
            self._registry.suspend(receipt.worker_id)
        log.warning(
            "dispute_logged",
            job_id=claims.job_id,
            worker_id=receipt.worker_id,
            outcome=outcome,
            position=verdict.position,
            log_index=result.log_index,
        )
        return result.log_index, outcome, verdict, receipt.worker_id, result.already_logged
