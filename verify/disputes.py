"""Disputes (ADR 14): evidence anyone can check that a worker's signed answer is not what the
pinned model gives, and the log entry that records it.

The evidence (a JSON file, the filer's; it holds the prompt, so it never enters the log):

    receipt_jws, evidence_sha256   the worker's signed receipt (v3) and the evidence of its key
    model_digest                   the pinned weights the verdict was computed with
    salt                           opens the receipt's commitments for this one job
    input, answer                  what was asked and what came back; the commitments bind them
    verdict, tolerance, verifier   the verifier's result: first inconsistent position and why

`check_evidence` is the structural check every party runs (signature, commitments, decoding
parameters, model digest, an inconsistent verdict). The gateway then re-runs the scoring pass when
it holds an engine for that model digest (outcome `reproduced`) and otherwise records the dispute
as `claimed`. Only the log entry's facts enter the log: digests, the verdict's position and a
reason without token ids (consistency.public_reason): never the prompt or a piece of the answer.

The `dispute` entry kind (signed by the operator key, like deposits), and its rule:
  reproduced  the job's reward is reversed to the cent (the schedule in force at the receipt's
              index, the receipt's token counts): client +cost, provider -(cost - fee), fee account
              -fee; the worker is suspended from routing (uniques ("suspended_worker", id));
              at most one per job (("dispute", job id)).
  claimed     recorded only; no money moves (no verifier reproduced it).
The receipt must be logged at `receipt_index`: a dispute over a job that was never paid for, or
that names another index, is refused (the auditor recomputes all of it from the log).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.verify import ledger_rules as lr
from ccgw.verify import limits
from ccgw.verify import log_entries as le
from ccgw.verify.consistency import (
    JobInput,
    Tolerance,
    Verdict,
    input_commit,
    output_commit,
    public_reason,
    receipt_decoding,
)
from ccgw.verify.errors import DisputeError, MalformedError, ReceiptError, VerifyError
from ccgw.verify.receipts import Receipt, verify_receipt

KIND = "dispute"
REPRODUCED, CLAIMED = "reproduced", "claimed"
OUTCOMES = (REPRODUCED, CLAIMED)
EVIDENCE_VERSION = 1


@dataclass(frozen=True)
class Evidence:
    receipt_jws: str
    evidence_sha256: str
    model_digest: str
    salt: bytes
    job: JobInput
    answer: str
    verdict: Verdict
    tolerance: Tolerance
    verifier: Mapping[str, str]  # engine_version, dtype, device of the verifier

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "v": EVIDENCE_VERSION,
                "receipt_jws": self.receipt_jws,
                "evidence_sha256": self.evidence_sha256,
                "model_digest": self.model_digest,
                "salt": self.salt.hex(),
                "input": self.job.to_json(),
                "answer": self.answer,
                "verdict": self.verdict.to_json(),
                "tolerance": self.tolerance.to_json(),
                "verifier": dict(self.verifier),
            },
            sort_keys=True,
            indent=1,
            ensure_ascii=False,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Evidence:
        if len(raw) > limits.DISPUTE_FILE_BYTES_MAX:
            raise DisputeError(f"a dispute exceeds {limits.DISPUTE_FILE_BYTES_MAX} bytes")
        try:
            o = json.loads(raw)
            if not isinstance(o, dict) or o.get("v") != EVIDENCE_VERSION:
                raise DisputeError(f"not a dispute (version {EVIDENCE_VERSION})")
            tol = o["tolerance"]
            return cls(
                receipt_jws=str(o["receipt_jws"]),
                evidence_sha256=le.hex64(o["evidence_sha256"]),
                model_digest=le.hex64(o["model_digest"]),
                salt=bytes.fromhex(str(o["salt"])),
                job=JobInput.from_json(o["input"]),
                answer=str(o["answer"]),
                verdict=Verdict.from_json(o["verdict"]),
                tolerance=Tolerance(float(tol["logit_margin"]), float(tol["mass_margin"])),
                verifier={str(k): str(v) for k, v in dict(o["verifier"]).items()},
            )
        except DisputeError:
            raise
        except (KeyError, TypeError, ValueError, MalformedError, RecursionError) as exc:
            raise DisputeError(f"the dispute does not parse: {exc}") from exc


def check_evidence(ev: Evidence, receipt_key: bytes, key_id: str) -> Receipt:
    """Everything but the re-execution: the receipt verifies with the worker's attested key, is
    v3, names this model digest and evidence; the salt opens its commitments to exactly this
    input and answer; the input's decoding parameters are the receipt's; the verdict names an
    inconsistency. Raises DisputeError naming the first thing that does not hold."""
    try:
        r = verify_receipt(ev.receipt_jws, receipt_key, key_id)
    except ReceiptError as exc:
        raise DisputeError(f"the receipt does not verify: {exc}") from exc
    if r.v < 3 or not r.input_commit:
        raise DisputeError(
            f"receipt v{r.v} carries no commitments to its input and answer: it cannot be disputed"
        )
    if r.evidence_sha256 != ev.evidence_sha256:
        raise DisputeError("the receipt names other evidence than the dispute")
    if r.model_digest != ev.model_digest:
        raise DisputeError("the verdict was computed with other weights than the receipt names")
    if input_commit(ev.salt, ev.job) != r.input_commit:
        raise DisputeError("the input is not the one the receipt commits to (wrong prompt?)")
    if output_commit(ev.salt, ev.answer) != r.output_commit:
        raise DisputeError("the answer is not the one the receipt commits to (altered answer?)")
    if ev.job.decoding != receipt_decoding(r):
        raise DisputeError("the input's decoding parameters are not the receipt's")
    if not ev.verdict.inconsistent:
        raise DisputeError(f"the verdict is {ev.verdict.status!r}: nothing to dispute")
    return r


# -- the log entry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DisputeBody:
    KIND: ClassVar[str] = KIND
    KEYS: ClassVar[frozenset[str]] = frozenset(
        {
            "receipt_jws",
            "evidence_sha256",
            "receipt_index",
            "outcome",
            "position",
            "reason",
            "filed_by",
            "sig",
        }
    )
    receipt_jws: str
    evidence_sha256: str
    receipt_index: int
    outcome: str  # REPRODUCED | CLAIMED
    position: int  # first inconsistent answer token (the answer's length: its end)
    reason: str
    filed_by: str  # the account that filed it
    sig: bytes  # the operator (log) key

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> DisputeBody:
        jws = o["receipt_jws"]
        if not isinstance(jws, str) or not 0 < len(jws) <= limits.RECEIPT_JWS_BYTES_MAX:
            raise MalformedError("receipt_jws must be a non-empty bounded string")
        if o["outcome"] not in OUTCOMES:
            raise MalformedError(f"outcome must be one of {OUTCOMES}")
        reason = o["reason"]
        if (
            not isinstance(reason, str)
            or not 0 < len(reason.encode()) <= limits.DISPUTE_REASON_BYTES_MAX
            or not reason.isprintable()
        ):
            raise MalformedError("reason is 1..256 bytes of printable text")
        return cls(
            jws,
            le.hex64(o["evidence_sha256"]),
            le.u63(o["receipt_index"], "receipt_index"),
            str(o["outcome"]),
            le.u63(o["position"], "position"),
            reason,
            le.real_account(o["filed_by"]),
            le.unb64(o["sig"], 64, "sig"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "receipt_jws": self.receipt_jws,
            "evidence_sha256": self.evidence_sha256,
            "receipt_index": self.receipt_index,
            "outcome": self.outcome,
            "position": self.position,
            "reason": self.reason,
            "filed_by": self.filed_by,
            "sig": le.b64(self.sig),
        }

    def claims(self) -> Receipt:
        return le.ReceiptBody(self.receipt_jws, self.evidence_sha256).claims()


def dispute_entry(
    operator: Ed25519PrivateKey,
    ev: Evidence,
    receipt_index: int,
    outcome: str,
    verdict: Verdict,
    filed_by: str,
) -> le.Entry:
    reason = public_reason(verdict)  # the log never sees token ids: they are pieces of the answer
    fields = (
        ev.receipt_jws,
        ev.evidence_sha256,
        receipt_index,
        outcome,
        verdict.answer_tokens if verdict.position is None else verdict.position,
        reason,
        filed_by,
    )
    unsigned = DisputeBody(*fields, bytes(64))
    body = DisputeBody(*fields, operator.sign(le.message(unsigned)))
    return le.encode(DisputeBody.from_json(body.to_json()))


def reversal_transfer(job: str, reward: lr.Transfer) -> lr.Transfer:
    return lr.Transfer(
        "reversal:" + job,
        "reversal",
        job,
        tuple(lr.Leg(leg.account, -leg.amount_micro) for leg in reward.legs),
    )


def _rule(body: DisputeBody, index: int, view: lr.LedgerReader) -> lr.Effects:
    if not le.verify_sig(view.operator_key(), le.message(body), body.sig):
        raise lr.RuleViolation("bad_signature", "dispute is not signed by the operator key")
    try:
        r = body.claims()
        le.real_account(r.account)
        le.real_account(r.provider)
    except (ReceiptError, MalformedError) as exc:
        raise lr.RuleViolation(
            "malformed_entry", f"disputed receipt does not parse: {exc}"
        ) from exc
    if r.evidence_sha256 != body.evidence_sha256:
        raise lr.RuleViolation("forged_dispute", "the receipt names other evidence than its entry")
    if r.v < 3:
        raise lr.RuleViolation("forged_dispute", f"receipt v{r.v} cannot be disputed")
    if view.unique_index("job", r.job_id) != body.receipt_index:
        raise lr.RuleViolation(
            "forged_dispute", f"job {r.job_id} has no receipt at entry {body.receipt_index}"
        )
    if body.receipt_index >= index:
        raise lr.RuleViolation("forged_dispute", "a dispute follows the receipt it disputes")
    if view.seen("dispute", r.job_id):
        raise lr.RuleViolation("job_disputed_twice", f"job {r.job_id} was reversed before")
    if body.outcome != REPRODUCED:
        return lr.Effects()
    schedule = view.schedule_at(body.receipt_index)
    if schedule is None:
        raise lr.RuleViolation("no_price_schedule", f"no schedule at {body.receipt_index}")
    cost = schedule.cost_micro(r.model, r.input_tokens, r.output_tokens)
    fee = schedule.fee_micro(cost)
    reward = lr.reward_transfer(r.job_id, r.account, r.provider, cost, fee, schedule.fee_account)
    unique: tuple[tuple[str, str], ...] = (("dispute", r.job_id),)
    if not view.seen("suspended_worker", r.worker_id):
        unique += (("suspended_worker", r.worker_id),)
    return lr.Effects(transfers=(reversal_transfer(r.job_id, reward),), unique=unique)


def suspended_by(body: DisputeBody) -> str | None:
    """The worker a dispute entry suspends from routing (None for a claimed one)."""
    if body.outcome != REPRODUCED:
        return None
    try:
        return body.claims().worker_id
    except VerifyError:
        return None


le.register(KIND, DisputeBody.KEYS, DisputeBody.from_json)
lr.register(KIND, _rule)
