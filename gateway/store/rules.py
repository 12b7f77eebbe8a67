"""The ledger rules on SQL, written once for both stores: hold states, idempotent settle, appends
checked by verify.ledger_rules, running balances, the Merkle frontier. Every function runs inside
one transaction (`Tx`) that the backend opens; the backends differ only in dialect, locking and
connections.

Each write reads what it needs first (rows it will change are locked as they are read), decides in
Python, then writes everything in one `tx.batch()` (PostgreSQL sends it in one round trip).
Lock order: log_head row -> account rows (sorted) -> hold rows. Only appends (settle, append) take
log_head and several accounts; hold and void lock one account; so no cycle can form.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ccgw.gateway.errors import BadRequest, Conflict, InsufficientFunds, PermissionDenied
from ccgw.gateway.store.base import AppendResult, SettleResult
from ccgw.gateway.store.schema import VIEW_TABLES
from ccgw.gateway.store.tree import append_leaf, head, write_head
from ccgw.verify import ledger_rules, limits, merkle
from ccgw.verify import log_entries as le
from ccgw.verify.errors import MalformedError, ReceiptError
from ccgw.verify.ledger_rules import EXTERNAL, Effects, RuleViolation
from ccgw.verify.prices import PriceSchedule

Row = tuple[Any, ...]


class Tx(Protocol):
    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def locked(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """one(), locking the rows it reads until the transaction ends (SELECT ... FOR UPDATE;
        SQLite's write transactions are exclusive already)."""
        ...

    def all(self, sql: str, params: Sequence[Any] = (), lock: bool = False) -> list[Row]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def batch(self) -> AbstractContextManager[None]:
        """Writes whose results nobody reads: sent together (a pipeline), errors at its end."""
        ...

    def lock_ledger(self) -> None:
        """Serialise every money transaction (PostgreSQL 'ledger' lock mode); else nothing."""
        ...


@dataclass
class Context:
    """What the rules need besides the tables: the operator key (from meta), parsed schedules
    (immutable, cached by entry body) and the last schedule seen in force (for holds)."""

    operator: bytes
    parsed: dict[bytes, PriceSchedule] = field(default_factory=dict)
    current: PriceSchedule | None = None


# A violation of the rules is the caller's error; its name picks the gateway error.
_REFUSALS: dict[str, type[Exception]] = {
    "negative_balance": InsufficientFunds,
    "bad_signature": PermissionDenied,
    "withdrawal_unauthorized": PermissionDenied,
    "account_key_conflict": Conflict,
    "duplicate_reference": Conflict,
    "job_logged_twice": Conflict,
    "job_disputed_twice": Conflict,
    "release_logged_twice": Conflict,
    "no_price_schedule": Conflict,
}


def check(entry: le.Entry, index: int, view: Ledger) -> Effects:
    try:
        return ledger_rules.apply(entry, index, view)
    except RuleViolation as exc:
        raise _REFUSALS.get(exc.problem, BadRequest)(f"{exc.problem}: {exc}") from exc


def _schedule(ctx: Context, body: bytes) -> PriceSchedule:
    if body not in ctx.parsed:  # by body, not index: a rolled-back write frees its index
        parsed = le.parse(le.Entry(le.PriceScheduleBody.KIND, body))
        assert isinstance(parsed, le.PriceScheduleBody)
        ctx.parsed[body] = parsed.schedule
    return ctx.parsed[body]


def account_rows(tx: Tx, accounts: Iterable[str], lock: bool) -> dict[str, list[int]]:
    """[balance, held] of each account (0, 0 when it has no row), locked in name order."""
    names = sorted(set(accounts))
    if not names:
        return {}
    marks = ", ".join("?" * len(names))
    q = f"SELECT account, balance_micro, held_micro FROM accounts WHERE account IN ({marks}) ORDER BY account"  # noqa: S608 - placeholders only
    found = {str(a): [int(b), int(h)] for a, b, h in tx.all(q, names, lock=lock)}
    return {n: found.get(n, [0, 0]) for n in names}


class Ledger:
    """The ledger as one transaction sees it: verify.ledger_rules.LedgerReader over the tables.
    An account row is read (and locked) once, then kept here with the changes this transaction
    makes, so the rules and the availability checks cost no further reads."""

    def __init__(self, tx: Tx, ctx: Context) -> None:
        self._tx, self._ctx = tx, ctx
        self.accounts: dict[str, list[int]] = {}  # account -> [balance, held]
        self._taken: dict[tuple[str, str], bool] = {}  # (namespace, key) -> taken?
        self._schedule: tuple[int, int | None, PriceSchedule] | None = None  # valid [lo, hi)

    def operator_key(self) -> bytes:
        return self._ctx.operator

    def schedule_at(self, index: int) -> PriceSchedule | None:
        c = self._schedule
        if c is not None and c[0] <= index and (c[1] is None or index < c[1]):
            return c[2]
        row = self._tx.one(
            "SELECT body, (SELECT MIN(from_index) FROM schedules WHERE from_index > ?) "
            "FROM schedules WHERE from_index <= ? ORDER BY from_index DESC, log_index DESC LIMIT 1",
            (index, index),
        )
        if row is None:
            return None
        schedule = _schedule(self._ctx, bytes(row[0]))
        self._schedule = (index, None if row[1] is None else int(row[1]), schedule)
        return schedule

    def latest_schedule_from(self) -> int | None:
        row = self._tx.one("SELECT from_index FROM schedules ORDER BY log_index DESC LIMIT 1")
        return None if row is None else int(row[0])

    def account_key(self, account: str) -> tuple[bytes, int] | None:
        rows = self._tx.all(
            "SELECT public_key FROM account_keys WHERE account = ? ORDER BY log_index DESC LIMIT ?",
            (account, limits.ACCOUNT_KEY_CHANGES_MAX + 1),
        )
        return (bytes(rows[0][0]), len(rows)) if rows else None

    def balance(self, account: str) -> int:
        return self.lock(account)[account][0]

    def seen(self, namespace: str, key: str) -> bool:
        if (namespace, key) not in self._taken:
            row = self._tx.one(
                "SELECT 1 FROM uniques WHERE namespace = ? AND key = ?", (namespace, key)
            )
            self._taken[(namespace, key)] = row is not None
        return self._taken[(namespace, key)]

    def unique_index(self, namespace: str, key: str) -> int | None:
        row = self._tx.one(
            "SELECT log_index FROM uniques WHERE namespace = ? AND key = ?", (namespace, key)
        )
        return None if row is None else int(row[0])

    def known_free(self, namespace: str, key: str) -> None:
        self._taken[(namespace, key)] = False

    def lock(self, *accounts: str) -> dict[str, list[int]]:
        todo = [a for a in accounts if a not in self.accounts]
        self.accounts.update(account_rows(self._tx, todo, lock=True))
        return self.accounts

    def apply(self, effects: Effects) -> dict[str, int]:
        """Count `effects` into the cached balances; refuse a debit that eats into what pending
        holds reserve. Returns the balance changes (written later by write_effects)."""
        changes = effects.balance_changes()
        self.lock(*changes)
        for acct, delta in changes.items():
            self.accounts[acct][0] += delta
        for acct, delta in changes.items():
            balance, held = self.accounts[acct]
            if delta < 0 and acct != EXTERNAL and balance < held:
                raise InsufficientFunds(f"{acct} has {balance - delta - held} available")
        self._taken.update(dict.fromkeys(effects.unique, True))
        if effects.schedule is not None:
            self._schedule = None
        return changes


def write_effects(
    tx: Tx, ctx: Context, index: int, entry: le.Entry, effects: Effects, held: dict[str, int]
) -> None:
    """The ledger view's rows for one entry: postings, running balances (and `held` changes),
    uniques, account keys, schedules."""
    tx.many(
        "INSERT INTO postings (seq, log_index, transfer_id, kind, job_id, account, amount_micro) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (ledger_rules.seq(index, p[0]), index, *p[1:])
            for p in ledger_rules.postings(index, effects)
        ],
    )
    changes = effects.balance_changes()
    tx.many(
        "INSERT INTO accounts (account, balance_micro, held_micro) VALUES (?, ?, ?) "
        "ON CONFLICT (account) DO UPDATE SET "
        "balance_micro = accounts.balance_micro + excluded.balance_micro, "
        "held_micro = accounts.held_micro + excluded.held_micro",
        [(a, changes.get(a, 0), held.get(a, 0)) for a in sorted(changes.keys() | held.keys())],
    )
    tx.many(
        "INSERT INTO uniques (namespace, key, log_index) VALUES (?, ?, ?)",
        [(ns, key, index) for ns, key in effects.unique],
    )
    if effects.account_key is not None:
        acct, key = effects.account_key
        tx.run(
            "INSERT INTO account_keys (account, log_index, public_key) VALUES (?, ?, ?)",
            (acct, index, key),
        )
    if effects.schedule is not None:
        tx.run(
            "INSERT INTO schedules (log_index, from_index, body) VALUES (?, ?, ?)",
            (index, effects.schedule.from_index, entry.body),
        )
        ctx.parsed[entry.body] = effects.schedule


def _log(
    ledger: Ledger,
    tx: Tx,
    ctx: Context,
    frontier: merkle.Frontier,
    entry: le.Entry,
    held: dict[str, int] | None = None,
    also: Callable[[], object] | None = None,
) -> Effects:
    """Check `entry` at the next index, then write what it causes and the entry itself (and
    `also`, a write of the caller's), in one batch."""
    index = frontier.size
    effects = check(entry, index, ledger)
    ledger.apply(effects)
    with tx.batch():
        if also is not None:
            also()
        write_effects(tx, ctx, index, entry, effects, held or {})
        append_leaf(tx, frontier, entry)
        write_head(tx, frontier)
    return effects


# -- appends -------------------------------------------------------------------------------------


def append(tx: Tx, ctx: Context, entry: le.Entry) -> AppendResult:
    if entry.kind == le.ReceiptBody.KIND:
        raise BadRequest("receipts are logged by settling their job")
    tx.lock_ledger()
    frontier = head(tx, lock=True)
    row = tx.one("SELECT idx FROM log_entries WHERE entry_hash = ?", (entry.leaf_hash(),))
    if row is not None:
        return AppendResult(int(row[0]), already_logged=True)
    _log(Ledger(tx, ctx), tx, ctx, frontier, entry)
    return AppendResult(frontier.size - 1, already_logged=False)


def import_entries(tx: Tx, ctx: Context, batch: Sequence[le.Entry]) -> int:
    """Append already-authorised entries in one transaction (restoring a log from a copy, and
    building large logs for benchmarks), each through the same rules; receipts skip the hold
    bookkeeping (no job is in flight). Returns the new log size."""
    tx.lock_ledger()
    frontier = head(tx, lock=True)
    ledger = Ledger(tx, ctx)
    for entry in batch:
        _log(ledger, tx, ctx, frontier, entry)
    return frontier.size


def ensure_schedule(tx: Tx, ctx: Context, entry_at: Callable[[int], le.Entry]) -> bool:
    tx.lock_ledger()
    frontier = head(tx, lock=True)
    if tx.one("SELECT 1 FROM schedules LIMIT 1") is not None:
        return False
    _log(Ledger(tx, ctx), tx, ctx, frontier, entry_at(frontier.size))
    return True


def settle(tx: Tx, ctx: Context, job_id: bytes, jws: str, evidence: str) -> SettleResult:
    body = le.ReceiptBody(jws, evidence)
    try:
        entry = le.encode(le.ReceiptBody.from_json(body.to_json()))
        claims = body.claims()
    except (MalformedError, ReceiptError) as exc:
        raise BadRequest(f"receipt cannot be logged: {exc}") from exc
    if claims.job_id != job_id.hex():
        raise BadRequest("receipt names another job")
    tx.lock_ledger()
    frontier = head(tx, lock=True)  # the log's total order
    done = tx.one(
        "SELECT log_index FROM uniques WHERE namespace = 'job' AND key = ?", (claims.job_id,)
    )
    if done is not None:
        return SettleResult(int(done[0]), already_settled=True)
    ledger = Ledger(tx, ctx)
    ledger.known_free("job", claims.job_id)
    schedule = ledger.schedule_at(frontier.size)
    fee_account = (schedule.fee_account,) if schedule else ()
    ledger.lock(claims.account, claims.provider, *fee_account)  # lock order: accounts, then hold
    hold_row = tx.locked(
        "SELECT account, amount_micro, state FROM holds WHERE job_id = ?", (job_id,)
    )
    if hold_row is None or hold_row[2] != "pending" or hold_row[0] != claims.account:
        raise Conflict("no pending hold for this job and account")
    released = {claims.account: -int(hold_row[1])}
    ledger.accounts[claims.account][1] -= int(hold_row[1])  # the hold gives way to the reward
    post = "UPDATE holds SET state = 'posted' WHERE job_id = ?"
    effects = _log(ledger, tx, ctx, frontier, entry, released, lambda: tx.run(post, (job_id,)))
    ctx.current = schedule
    legs = effects.transfers[0].legs
    cost = -legs[0].amount_micro if legs else 0
    fee = schedule.fee_micro(cost) if schedule else 0
    return SettleResult(frontier.size - 1, False, cost_micro=cost, fee_micro=fee)


# -- reservations --------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _held(tx: Tx, account: str, delta: int) -> None:
    tx.run(
        "INSERT INTO accounts (account, balance_micro, held_micro) VALUES (?, 0, ?) "
        "ON CONFLICT (account) DO UPDATE SET held_micro = accounts.held_micro + excluded.held_micro",
        (account, delta),
    )


def hold(tx: Tx, job_id: bytes, account: str, amount_micro: int) -> None:
    if amount_micro < 0:
        raise BadRequest("a hold is not negative")
    tx.lock_ledger()
    balance, held = account_rows(tx, [account], lock=True)[account]
    row = tx.locked("SELECT account, state FROM holds WHERE job_id = ?", (job_id,))
    if row is not None:
        if row[1] == "posted":
            raise Conflict("job already settled")
        if row[1] == "pending":
            raise Conflict("job already in flight")
        if row[0] != account:
            raise Conflict("job id belongs to another account")
    if balance - held < amount_micro:
        raise InsufficientFunds(
            f"job may cost up to {amount_micro} micro-tokens; {balance - held} available"
        )
    with tx.batch():
        tx.run(
            "INSERT INTO holds (job_id, account, amount_micro, state, created_ms) "
            "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (job_id) DO UPDATE SET amount_micro = "
            "excluded.amount_micro, state = 'pending', created_ms = excluded.created_ms",
            (job_id, account, amount_micro, _now_ms()),
        )
        if amount_micro:
            _held(tx, account, amount_micro)


def _void(tx: Tx, job_id: bytes, account: str) -> bool:
    """Void a pending hold of `account` (locked first: lock order account, then hold)."""
    account_rows(tx, [account], lock=True)
    row = tx.locked(
        "SELECT amount_micro FROM holds WHERE job_id = ? AND state = 'pending'", (job_id,)
    )
    if row is None:  # settled or voided meanwhile
        return False
    with tx.batch():
        tx.run("UPDATE holds SET state = 'voided' WHERE job_id = ?", (job_id,))
        if int(row[0]):
            _held(tx, account, -int(row[0]))
    return True


def void(tx: Tx, job_id: bytes) -> bool:
    tx.lock_ledger()
    row = tx.one("SELECT account FROM holds WHERE job_id = ? AND state = 'pending'", (job_id,))
    return row is not None and _void(tx, job_id, str(row[0]))


def release_holds(tx: Tx, created_before_ms: int | None) -> int:
    tx.lock_ledger()
    q = "SELECT job_id, account FROM holds WHERE state = 'pending'"
    rows = (
        tx.all(q)
        if created_before_ms is None
        else tx.all(q + " AND created_ms < ?", (created_before_ms,))
    )
    return sum(_void(tx, bytes(j), str(a)) for j, a in sorted(rows, key=lambda r: str(r[1])))


# -- rebuild -------------------------------------------------------------------------------------

REBUILD_PAGE_ENTRIES = 1_000


def rebuild(tx: Tx, ctx: Context) -> int:
    """Replay every entry through the rules into empty view tables and a fresh tree."""
    from ccgw.gateway.store.reads import entries

    tx.lock_ledger()
    head(tx, lock=True)
    for table in (*VIEW_TABLES, "log_nodes"):
        tx.run(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    ctx.parsed.clear()
    frontier = merkle.Frontier()
    ledger = Ledger(tx, ctx)
    start = 0
    while page := entries(tx, start, start + REBUILD_PAGE_ENTRIES):
        for e in page:
            if e.index != frontier.size:
                raise BadRequest(f"the log has no entry {frontier.size}")
            effects = check(e.entry, e.index, ledger)
            ledger.apply(effects)
            write_effects(tx, ctx, e.index, e.entry, effects, {})
            tx.many(
                "INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)",
                frontier.append(e.entry.leaf_hash()),
            )
        start += len(page)
    write_head(tx, frontier)
    pending = (
        "SELECT account, SUM(amount_micro) FROM holds WHERE state = 'pending' GROUP BY account"
    )
    for acct, amount in tx.all(pending):
        _held(tx, str(acct), int(amount))
    return frontier.size
