"""The ledger rules, written once: what each log entry requires and which transfers it causes.

The gateway's store applies them to its SQL view inside the append transaction (refusing an entry
that breaks one); the auditor applies them to its own in-memory view while replaying the log (each
break is a named problem). Both call `apply(entry, index, view)`:

  receipt         reward: client -cost, provider +(cost - fee), fee account +fee, where cost and fee
                  follow from the receipt's token counts and the price schedule in force at the
                  entry's index; at most one per job id
  deposit         external -amount, account +amount; signed by the operator key; reference unique
  withdrawal      account -amount, external +amount; signed by the account's key in force at the
                  entry's index; (account, reference) unique
  price_schedule  no transfer; signed by the operator key; in force from `from_index`, which is not
                  before the entry itself nor before the previous schedule's
  account_key     no transfer; the account's first key is self-signed; a change names the current
                  key and is signed by it as well
  release         no transfer; a well-formed signed manifest, each release digest logged once (the
                  release key's signature is each verifier's to check against the keys it trusts)
  revocation      no transfer; a well-formed signed revocation, each document logged once

Every transfer sums to zero; no account but `external` goes below zero; no balance exceeds
limits.BALANCE_MICRO_MAX. Violations raise RuleViolation with the problem's name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ccgw.verify import limits
from ccgw.verify import log_entries as le
from ccgw.verify.errors import MalformedError, ReceiptError, VerifyError
from ccgw.verify.prices import PriceSchedule

EXTERNAL = le.EXTERNAL
# Kinds of transfer in the ledger view; anything else served by a gateway is unknown.
TRANSFER_KINDS = frozenset({"reward", "deposit", "withdrawal", "reversal"})


class RuleViolation(VerifyError):
    def __init__(self, problem: str, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem


@dataclass(frozen=True)
class Leg:
    account: str
    amount_micro: int


@dataclass(frozen=True)
class Transfer:
    transfer_id: str
    kind: str
    job_id: str  # hex; "" unless kind == "reward"
    legs: tuple[Leg, ...]


@dataclass(frozen=True)
class Effects:
    """What one entry changes in a ledger view."""

    transfers: tuple[Transfer, ...] = ()
    unique: tuple[tuple[str, str], ...] = ()  # (namespace, key) taken by this entry
    account_key: tuple[str, bytes] | None = None
    schedule: PriceSchedule | None = None

    def balance_changes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.transfers:
            for leg in t.legs:
                out[leg.account] = out.get(leg.account, 0) + leg.amount_micro
        return out


class LedgerReader(Protocol):
    """What the rules read from a view (the SQL view or the auditor's in-memory one)."""

    def operator_key(self) -> bytes: ...

    def schedule_at(self, index: int) -> PriceSchedule | None: ...

    def latest_schedule_from(self) -> int | None:
        """from_index of the last schedule appended, None before the first."""
        ...

    def account_key(self, account: str) -> tuple[bytes, int] | None:
        """(current key, number of key entries so far) of an account."""
        ...

    def balance(self, account: str) -> int: ...

    def seen(self, namespace: str, key: str) -> bool: ...

    def unique_index(self, namespace: str, key: str) -> int | None:
        """The log index of the entry that took (namespace, key), None if none did."""
        ...


Rule = Callable[[Any, int, LedgerReader], Effects]


def _legs(*legs: tuple[str, int]) -> tuple[Leg, ...]:
    return tuple(Leg(a, m) for a, m in legs if m)


def reward_transfer(
    job: str, client: str, provider: str, cost: int, fee: int, fee_account: str
) -> Transfer:
    return Transfer(
        "reward:" + job,
        "reward",
        job,
        _legs((client, -cost), (provider, cost - fee), (fee_account, fee)),
    )


def _receipt(body: le.ReceiptBody, index: int, view: LedgerReader) -> Effects:
    try:
        r = body.claims()
        le.real_account(r.account)
        le.real_account(r.provider)
    except (ReceiptError, MalformedError) as exc:
        raise RuleViolation("malformed_entry", f"receipt does not parse: {exc}") from exc
    if r.evidence_sha256 != body.evidence_sha256:
        raise RuleViolation("forged_receipt", "the receipt names other evidence than its entry")
    if view.seen("job", r.job_id):
        raise RuleViolation("job_logged_twice", f"job {r.job_id} already has a receipt")
    schedule = view.schedule_at(index)
    if schedule is None:
        raise RuleViolation("no_price_schedule", f"no price schedule is in force at {index}")
    cost = schedule.cost_micro(r.model, r.input_tokens, r.output_tokens)
    if cost > limits.AMOUNT_MICRO_MAX:
        raise RuleViolation("amount_out_of_range", f"job {r.job_id} would cost {cost}")
    fee = schedule.fee_micro(cost)
    t = reward_transfer(r.job_id, r.account, r.provider, cost, fee, schedule.fee_account)
    return Effects(transfers=(t,), unique=(("job", r.job_id),))


def _deposit(body: le.DepositBody, index: int, view: LedgerReader) -> Effects:
    if not le.verify_sig(view.operator_key(), le.message(body), body.sig):
        raise RuleViolation("bad_signature", "deposit is not signed by the operator key")
    if view.seen("deposit", body.reference):
        raise RuleViolation("duplicate_reference", f"deposit {body.reference!r} credited before")
    t = Transfer(
        "deposit:" + body.reference,
        "deposit",
        "",
        _legs((EXTERNAL, -body.amount_micro), (body.account, body.amount_micro)),
    )
    return Effects(transfers=(t,), unique=(("deposit", body.reference),))


def _withdrawal(body: le.WithdrawalBody, index: int, view: LedgerReader) -> Effects:
    key = view.account_key(body.account)
    if key is None:
        raise RuleViolation("withdrawal_unauthorized", f"{body.account} has no registered key")
    if not le.verify_sig(key[0], le.message(body), body.sig):
        raise RuleViolation("bad_signature", "withdrawal is not signed by the account's key")
    ref = f"{body.account} {body.reference}"
    if view.seen("withdrawal", ref):
        raise RuleViolation("duplicate_reference", f"withdrawal {ref!r} debited before")
    t = Transfer(
        f"withdrawal:{body.account}:{body.reference}",
        "withdrawal",
        "",
        _legs((body.account, -body.amount_micro), (EXTERNAL, body.amount_micro)),
    )
    return Effects(transfers=(t,), unique=(("withdrawal", ref),))


def _price_schedule(body: le.PriceScheduleBody, index: int, view: LedgerReader) -> Effects:
    if not le.verify_sig(view.operator_key(), le.message(body), body.sig):
        raise RuleViolation("bad_signature", "price schedule is not signed by the operator key")
    previous = view.latest_schedule_from()
    start = body.schedule.from_index
    if start < index or (previous is not None and start < previous):
        raise RuleViolation(
            "schedule_retroactive",
            f"schedule at {index} would apply from {start} (previous from {previous})",
        )
    return Effects(schedule=body.schedule)


def _account_key(body: le.AccountKeyBody, index: int, view: LedgerReader) -> Effects:
    msg = le.message(body)
    if not le.verify_sig(body.public_key, msg, body.sig):
        raise RuleViolation("bad_signature", "account key is not signed by itself")
    current = view.account_key(body.account)
    if current is None:
        if body.previous_key:
            raise RuleViolation("account_key_conflict", f"{body.account} has no key to replace")
    else:
        if body.previous_key != current[0]:
            raise RuleViolation("account_key_conflict", f"{body.account} already has another key")
        if not le.verify_sig(current[0], msg, body.sig_previous):
            raise RuleViolation("bad_signature", "key change is not signed by the current key")
        if current[1] >= limits.ACCOUNT_KEY_CHANGES_MAX:
            raise RuleViolation("account_key_conflict", f"{body.account} changed keys too often")
    return Effects(account_key=(body.account, body.public_key))


def _release(body: le.ReleaseBody, index: int, view: LedgerReader) -> Effects:
    digest = body.document.digest
    if view.seen("release", digest):
        raise RuleViolation("release_logged_twice", f"release {digest} is already in the log")
    return Effects(unique=(("release", digest),))


def _revocation(body: le.RevocationBody, index: int, view: LedgerReader) -> Effects:
    key = hashlib.sha256(body.document.to_bytes()).hexdigest()
    if view.seen("revocation", key):
        raise RuleViolation("release_logged_twice", f"revocation {key} is already in the log")
    return Effects(unique=(("revocation", key),))


RULES: dict[str, Rule] = {
    le.ReceiptBody.KIND: _receipt,
    le.DepositBody.KIND: _deposit,
    le.WithdrawalBody.KIND: _withdrawal,
    le.PriceScheduleBody.KIND: _price_schedule,
    le.AccountKeyBody.KIND: _account_key,
    le.ReleaseBody.KIND: _release,
    le.RevocationBody.KIND: _revocation,
}


def register(kind: str, rule: Rule) -> None:
    """The rule of a kind added with log_entries.register (a kind that moves no money returns
    Effects())."""
    if kind in RULES or kind not in le.KINDS:
        raise ValueError(f"rule for {kind!r} is taken or the kind is not registered")
    RULES[kind] = rule


def check_transfers(effects: Effects, view: LedgerReader) -> None:
    if sum(len(t.legs) for t in effects.transfers) > limits.TRANSFER_LEGS_MAX:
        raise RuleViolation("unbalanced_transfer", "an entry moves money in too many legs")
    for t in effects.transfers:
        if t.kind not in TRANSFER_KINDS:
            raise RuleViolation("unknown_transfer_kind", f"transfer {t.transfer_id} of {t.kind}")
        if sum(leg.amount_micro for leg in t.legs) != 0:
            raise RuleViolation("unbalanced_transfer", f"transfer {t.transfer_id} is unbalanced")
    for acct, delta in effects.balance_changes().items():
        after = view.balance(acct) + delta
        if acct != EXTERNAL and after < 0:
            raise RuleViolation("negative_balance", f"{acct} would go to {after}")
        if abs(after) > limits.BALANCE_MICRO_MAX:
            raise RuleViolation("amount_out_of_range", f"{acct} would reach {after}")


def apply(entry: le.Entry, index: int, view: LedgerReader) -> Effects:
    """Check `entry` appended at `index` against every rule; return what it changes."""
    rule = RULES.get(entry.kind)
    if rule is None:
        raise RuleViolation("unknown_entry_kind", f"entry {index} has kind {entry.kind[:40]!r}")
    try:
        body = le.parse(entry)
    except MalformedError as exc:
        raise RuleViolation("malformed_entry", f"entry {index}: {exc}") from exc
    effects = rule(body, index, view)
    check_transfers(effects, view)
    return effects


@dataclass
class MemoryLedger:
    """A ledger view in memory: the auditor's replay (and a reference for the stores' tests)."""

    operator: bytes
    balances: dict[str, int] = field(default_factory=dict)
    taken: set[tuple[str, str]] = field(default_factory=set)
    taken_at: dict[tuple[str, str], int] = field(default_factory=dict)
    keys: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    schedules: list[PriceSchedule] = field(default_factory=list)  # in log order

    def operator_key(self) -> bytes:
        return self.operator

    def schedule_at(self, index: int) -> PriceSchedule | None:
        for s in reversed(self.schedules):  # from_index never decreases along the log
            if s.from_index <= index:
                return s
        return None

    def latest_schedule_from(self) -> int | None:
        return self.schedules[-1].from_index if self.schedules else None

    def account_key(self, account: str) -> tuple[bytes, int] | None:
        return self.keys.get(account)

    def balance(self, account: str) -> int:
        return self.balances.get(account, 0)

    def seen(self, namespace: str, key: str) -> bool:
        return (namespace, key) in self.taken

    def unique_index(self, namespace: str, key: str) -> int | None:
        return self.taken_at.get((namespace, key))

    def record(self, effects: Effects, index: int = -1) -> None:
        """Count `effects` of the entry at `index` into the view."""
        for acct, delta in effects.balance_changes().items():
            self.balances[acct] = self.balances.get(acct, 0) + delta
        self.taken.update(effects.unique)
        self.taken_at.update(dict.fromkeys(effects.unique, index))
        if effects.account_key is not None:
            acct, key = effects.account_key
            self.keys[acct] = (key, self.keys.get(acct, (b"", 0))[1] + 1)
        if effects.schedule is not None:
            self.schedules.append(effects.schedule)


def postings(index: int, effects: Effects) -> list[tuple[int, str, str, str, str, int]]:
    """The ledger-view rows an entry causes: (leg number, transfer id, kind, job id, account,
    amount), numbered in order; seq = index * TRANSFER_LEGS_MAX + leg number + 1."""
    out: list[tuple[int, str, str, str, str, int]] = []
    for t in effects.transfers:
        for leg in t.legs:
            out.append((len(out), t.transfer_id, t.kind, t.job_id, leg.account, leg.amount_micro))
    return out


def seq(index: int, leg: int) -> int:
    """A posting's place in the ledger view (from 1, so that `after_seq=0` lists them all)."""
    return index * limits.TRANSFER_LEGS_MAX + leg + 1


def total(balances: Mapping[str, int] | Iterable[tuple[str, int]]) -> int:
    items = balances.items() if isinstance(balances, Mapping) else balances
    return sum(v for _, v in items)


# Kinds added by their own modules (log_entries.register + register above), imported last so that
# every party that applies the rules knows them.
from ccgw.verify import disputes as _disputes  # noqa: E402, F401
