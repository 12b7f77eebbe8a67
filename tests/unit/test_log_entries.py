"""Log entries: one canonical encoding per entry, domain-separated leaves and signatures, bounded
hostile parsing; the ledger rules registry covers every kind; the in-memory view replays rules."""

from __future__ import annotations

import contextlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ccgw.verify import ledger_rules, limits, merkle
from ccgw.verify import log_entries as le
from ccgw.verify.encoding import fields
from ccgw.verify.errors import MalformedError
from ccgw.verify.ledger_rules import MemoryLedger, RuleViolation
from ccgw.verify.prices import DEFAULT_SCHEDULE, Price, PriceSchedule
from tests.support.ledger import EVIDENCE, job, receipt

OP = Ed25519PrivateKey.generate()
OP_PUB = OP.public_key().public_bytes_raw()


def test_leaf_is_domain_separated_kind_and_body() -> None:
    e = le.deposit(OP, "client:a", 5, "r1")
    assert e.leaf() == fields("ccgw/v1/log-entry", b"deposit", e.body)
    assert e.leaf_hash() == merkle.leaf_hash(e.leaf())
    same_body_other_kind = le.Entry("withdrawal", e.body)
    assert same_body_other_kind.leaf_hash() != e.leaf_hash()
    body = le.parse(e)
    assert isinstance(body, le.DepositBody) and body.amount_micro == 5
    assert le.encode(body) == e  # one encoding


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.replace(b'"amount_micro":5', b'"amount_micro": 5'),  # not canonical
        lambda b: b.replace(b'"amount_micro":5', b'"amount_micro":5.0'),  # a float
        lambda b: b.replace(b'"amount_micro":5', b'"amount_micro":true'),
        lambda b: b.replace(b'"amount_micro":5', b'"amount_micro":0'),
        lambda b: b.replace(b'"amount_micro":5', b'"amount_micro":' + str(2**70).encode()),
        lambda b: b.replace(b'"account":"client:a"', b'"account":"external"'),
        lambda b: b.replace(b'"account":"client:a"', b'"account":"client a"'),
        lambda b: b.replace(b'{"account"', b'{"account":"x","account"'),  # a repeated key
        lambda b: b.replace(b'"reference":"r1"', b'"reference":"r1","extra":1'),
        lambda b: b[:-1],
        lambda b: b"[" + b + b"]",
        lambda b: b"{" * 100_000,
        lambda b: b + b" " * limits.LOG_ENTRY_BODY_BYTES_MAX,
    ],
)
def test_hostile_bodies_are_malformed(mutate) -> None:  # type: ignore[no-untyped-def]
    e = le.deposit(OP, "client:a", 5, "r1")
    with pytest.raises(MalformedError):
        le.parse(le.Entry("deposit", mutate(e.body)))


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from([*le.KINDS, "nope"]), body=st.binary(max_size=300))
def test_any_bytes_parse_or_raise_malformed(kind: str, body: bytes) -> None:
    with contextlib.suppress(MalformedError):  # anything else escaping is a bug
        le.parse(le.Entry(kind, body))
    with pytest.raises(RuleViolation) as err:  # random bytes are never a valid entry
        ledger_rules.apply(le.Entry(kind, body), 0, MemoryLedger(OP_PUB))
    assert err.value.problem in {"unknown_entry_kind", "malformed_entry"}


def test_rules_cover_every_kind_and_new_kinds_register_in_both() -> None:
    assert set(ledger_rules.RULES) == set(le.KINDS)
    with pytest.raises(ValueError, match="taken"):
        le.register("deposit", frozenset(), dict)
    with pytest.raises(ValueError, match="not registered"):
        ledger_rules.register("dispute", lambda body, index, view: ledger_rules.Effects())


def _view() -> MemoryLedger:
    v = MemoryLedger(OP_PUB)
    for i, e in enumerate(
        [le.price_schedule(OP, DEFAULT_SCHEDULE), le.deposit(OP, "client:c", 1_000, "d")]
    ):
        v.record(ledger_rules.apply(e, i, v))
    return v


def test_receipt_reward_follows_the_schedule_at_its_index() -> None:
    v = _view()
    e = le.encode(le.ReceiptBody(receipt(1), EVIDENCE))
    fx = ledger_rules.apply(e, 2, v)
    (t,) = fx.transfers
    assert (t.kind, t.job_id) == ("reward", job(1).hex())
    assert [(leg.account, leg.amount_micro) for leg in t.legs] == [
        ("client:c", -200),
        ("provider:p", 190),
        ("network:fee", 10),
    ]
    v.record(fx)
    with pytest.raises(RuleViolation) as dup:
        ledger_rules.apply(e, 3, v)
    assert dup.value.problem == "job_logged_twice"
    other = le.encode(le.ReceiptBody(receipt(2), "cd" * 32))
    with pytest.raises(RuleViolation) as ev:
        ledger_rules.apply(other, 3, v)
    assert ev.value.problem == "forged_receipt"
    broke = le.encode(le.ReceiptBody(receipt(3, tokens=(10**6, 0)), EVIDENCE))
    with pytest.raises(RuleViolation) as neg:
        ledger_rules.apply(broke, 3, v)
    assert neg.value.problem == "negative_balance"


def test_signed_kinds_need_their_signer() -> None:
    v = _view()
    stranger = Ed25519PrivateKey.generate()
    cases = [
        (le.deposit(stranger, "client:c", 1, "x"), "bad_signature"),
        (le.deposit(OP, "client:c", 1, "d"), "duplicate_reference"),
        (le.price_schedule(stranger, DEFAULT_SCHEDULE.with_from_index(5)), "bad_signature"),
        (le.price_schedule(OP, DEFAULT_SCHEDULE), "schedule_retroactive"),
        (le.withdrawal(stranger, "client:c", 1, "w"), "withdrawal_unauthorized"),
        (le.account_key(stranger, "client:c", previous=OP), "account_key_conflict"),
    ]
    for entry, problem in cases:
        with pytest.raises(RuleViolation) as err:
            ledger_rules.apply(entry, 2, v)
        assert err.value.problem == problem, entry
    holder, thief = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    v.record(ledger_rules.apply(le.account_key(holder, "client:c"), 2, v))
    for entry, problem in [
        (le.account_key(thief, "client:c"), "account_key_conflict"),
        (le.withdrawal(thief, "client:c", 1, "w"), "bad_signature"),
        (le.withdrawal(holder, "client:c", 5_000, "w"), "negative_balance"),
    ]:
        with pytest.raises(RuleViolation) as err:
            ledger_rules.apply(entry, 3, v)
        assert err.value.problem == problem
    forged_change = json.loads(le.account_key(thief, "client:c", previous=thief).body)
    forged_change["previous_key"] = le.b64(holder.public_key().public_bytes_raw())
    with pytest.raises(RuleViolation) as err:
        ledger_rules.apply(le.Entry("account_key", le.canonical(forged_change)), 3, v)
    assert err.value.problem == "bad_signature"
    fx = ledger_rules.apply(le.withdrawal(holder, "client:c", 300, "w"), 3, v)
    v.record(fx)
    assert v.balance("client:c") == 700 and v.balance("external") == -700


def test_price_schedule_round_trip_and_arithmetic() -> None:
    s = PriceSchedule(
        Price(1_001, 2_003), (("a", Price(1, 1)), ("b", Price(0, 7))), 333, "network:x", 4
    )
    body = le.parse(le.price_schedule(OP, s))
    assert isinstance(body, le.PriceScheduleBody) and body.schedule == s
    assert s.cost_micro("zzz", 1, 1) == 2 + 3 and s.cost_micro("b", 5, 1_000) == 7
    assert s.fee_micro(10_000) == 333
    with pytest.raises(MalformedError):
        PriceSchedule(Price(1, 1), (("b", Price(1, 1)), ("a", Price(1, 1))))
    with pytest.raises(MalformedError):
        Price(-1, 0)
    with pytest.raises(MalformedError):
        PriceSchedule(fee_bps=10_001)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_stored_nodes_give_the_reference_roots_and_proofs(n: int, data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    f, nodes = merkle.Frontier(), {}
    for h in leaves:
        for level, idx, node in f.append(h):
            nodes[(level, idx)] = node
    assert f.root() == merkle.root(leaves)
    assert merkle.Frontier.from_bytes(f.size, f.to_bytes()).root() == f.root()
    m = data.draw(st.integers(1, n))
    i = data.draw(st.integers(0, m - 1))
    proof = [merkle.range_hash(a, b, nodes) for a, b in merkle.inclusion_ranges(i, m)]
    assert proof == merkle.inclusion_proof(i, leaves[:m])
    k = data.draw(st.integers(1, m))
    cons = [merkle.range_hash(a, b, nodes) for a, b in merkle.consistency_ranges(k, m)]
    assert cons == merkle.consistency_proof(k, leaves[:m])
    assert merkle.range_hash(0, m, nodes) == merkle.root(leaves[:m])
    assert len(merkle.nodes_for(merkle.inclusion_ranges(i, m))) <= 2 * m.bit_length() ** 2
