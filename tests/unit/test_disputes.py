"""Disputes (verify.disputes): forged evidence is refused before anything is logged; a dispute
entry reverses exactly the job's reward and suspends the worker, once, and only for a logged job."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.verify import disputes, ledger_rules
from ccgw.verify import log_entries as le
from ccgw.verify.consistency import (
    CONSISTENT,
    INCONSISTENT,
    Decoding,
    JobInput,
    Verdict,
    commit_salt,
    input_commit,
    output_commit,
)
from ccgw.verify.disputes import CLAIMED, REPRODUCED, Evidence, check_evidence, dispute_entry
from ccgw.verify.errors import DisputeError
from ccgw.verify.ledger_rules import MemoryLedger, RuleViolation
from ccgw.verify.prices import DEFAULT_SCHEDULE
from ccgw.verify.receipts import Receipt, sign_receipt

OP = Ed25519PrivateKey.generate()
WORKER = Ed25519PrivateKey.generate()
WPUB = WORKER.public_key().public_bytes_raw()
EVID = "ab" * 32
DIGEST = "cd" * 32
SALT = commit_salt(b"\x07" * 32)
JOB = JobInput("What is 2+2?", None, (), Decoding.of(0.0, 1.0, 0, 8, None, ()))
BAD = Verdict(INCONSISTENT, 3, "token 5 is not the argmax 9", 8, 4)


def _receipt(i: int, answer: str = "four....", job: JobInput = JOB, v: int = 3) -> str:
    d = job.decoding
    r = Receipt(
        v=v,
        job_id=i.to_bytes(16, "big").hex(),
        worker_id="w-cheat",
        key_id="k",
        account="client:c",
        provider="provider:p",
        model="m",
        model_digest=DIGEST,
        request_sha256="00" * 32,
        answer_sha256="00" * 32,
        answer_chunks=1,
        input_tokens=100,
        output_tokens=50,
        started_at_ms=1,
        finished_at_ms=2,
        evidence_sha256=EVID,
        finish_reason="length",
        **(
            dict(
                input_commit=input_commit(SALT, job),
                output_commit=output_commit(SALT, answer),
                temperature=d.temperature,
                top_p=d.top_p,
                top_k=d.top_k,
                max_tokens=d.max_tokens,
                seed=d.seed,
                stop_count=d.stop_count,
                engine_version="e",
                dtype="float32",
            )
            if v == 3
            else {}
        ),
    )
    return sign_receipt(r, WORKER, "k")


def _evidence(jws: str, **kw: object) -> Evidence:
    base = Evidence(jws, EVID, DIGEST, SALT, JOB, "four....", BAD, disputes.Tolerance(), {})
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_evidence_that_holds_together_is_accepted_and_survives_its_file() -> None:
    ev = _evidence(_receipt(1))
    assert Evidence.from_json(ev.to_json()) == ev
    assert check_evidence(ev, WPUB, "k").job_id == (1).to_bytes(16, "big").hex()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"answer": "five...."}, "altered answer"),
        ({"job": dataclasses.replace(JOB, prompt="What is 3+3?")}, "wrong prompt"),
        ({"job": dataclasses.replace(JOB, stop=("x",))}, "wrong prompt"),
        ({"salt": b"\x00" * 32}, "wrong prompt"),
        ({"receipt_jws": _receipt(2, answer="other")}, "altered answer"),
        ({"model_digest": "ef" * 32}, "other weights"),
        ({"evidence_sha256": "ef" * 32}, "other evidence"),
        ({"verdict": dataclasses.replace(BAD, status=CONSISTENT)}, "nothing to dispute"),
        ({"receipt_jws": _receipt(1, v=2)}, "cannot be disputed"),
        ({"receipt_jws": _receipt(1)[:-4] + "AAAA"}, "does not verify"),
    ],
)
def test_forged_evidence_is_refused(change: dict[str, object], why: str) -> None:
    with pytest.raises(DisputeError, match=why):
        check_evidence(_evidence(_receipt(1), **change), WPUB, "k")


def test_another_workers_receipt_is_refused() -> None:
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(DisputeError, match="does not verify"):
        check_evidence(_evidence(_receipt(1)), other, "k")


def _ledger() -> tuple[MemoryLedger, int]:
    v = MemoryLedger(OP.public_key().public_bytes_raw())
    entries = [
        le.price_schedule(OP, DEFAULT_SCHEDULE),
        le.deposit(OP, "client:c", 1_000, "d"),
        le.encode(le.ReceiptBody(_receipt(1), EVID)),
    ]
    for i, e in enumerate(entries):
        v.record(ledger_rules.apply(e, i, v), i)
    return v, len(entries)


def test_reproduced_dispute_reverses_the_reward_and_suspends_the_worker() -> None:
    v, n = _ledger()
    before = dict(v.balances)
    assert before["client:c"] == 800 and before["provider:p"] == 190
    e = dispute_entry(OP, _evidence(_receipt(1)), 2, REPRODUCED, BAD, "client:c")
    body = le.parse(e)
    assert isinstance(body, disputes.DisputeBody) and disputes.suspended_by(body) == "w-cheat"
    assert "What is" not in e.body.decode()  # the log never sees the prompt or the answer
    assert isinstance(body, disputes.DisputeBody) and "token 5" not in body.reason  # nor its ids
    assert body.reason == "a claimed token is not the model's argmax (greedy)"
    fx = ledger_rules.apply(e, n, v)
    (t,) = fx.transfers
    assert (t.kind, t.transfer_id) == ("reversal", "reversal:" + (1).to_bytes(16, "big").hex())
    v.record(fx, n)
    assert v.balances["client:c"] == 1_000 and v.balances["provider:p"] == 0
    assert v.balances.get("network:fee", 0) == 0
    assert v.seen("suspended_worker", "w-cheat")
    with pytest.raises(RuleViolation) as twice:
        ledger_rules.apply(e, n + 1, v)
    assert twice.value.problem == "job_disputed_twice"


def test_claimed_dispute_moves_no_money() -> None:
    v, n = _ledger()
    e = dispute_entry(OP, _evidence(_receipt(1)), 2, CLAIMED, BAD, "client:c")
    fx = ledger_rules.apply(e, n, v)
    assert fx.transfers == () and fx.unique == ()
    body = le.parse(e)
    assert isinstance(body, disputes.DisputeBody) and disputes.suspended_by(body) is None


def test_dispute_entries_that_do_not_hold_are_refused_by_the_rules() -> None:
    v, n = _ledger()
    ev = _evidence(_receipt(1))
    cases = {
        "bad_signature": dispute_entry(Ed25519PrivateKey.generate(), ev, 2, REPRODUCED, BAD, "c"),
        "forged_dispute": dispute_entry(OP, ev, 1, REPRODUCED, BAD, "c"),  # not its index
    }
    unlogged = _evidence(_receipt(9))  # a job that was never paid for
    cases["forged_dispute "] = dispute_entry(OP, unlogged, 2, REPRODUCED, BAD, "c")
    for problem, e in cases.items():
        with pytest.raises(RuleViolation) as err:
            ledger_rules.apply(e, n, v)
        assert err.value.problem == problem.strip()
