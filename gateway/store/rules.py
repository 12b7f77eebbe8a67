"""The ledger rules on SQL, written once for both stores: hold states, idempotent settle, appends
checked by verify.ledger_rules, running balances, the Merkle frontier. Every function runs inside
one transaction (`Tx`) that the backend opens; the backends differ only in dialect, locking and
connections.

Lock order (PostgreSQL, per-account locking): log_head row -> account rows -> hold rows. A
transaction that appends (settle, append) takes log_head first, so appends are totally ordered and
only they lock several accounts; hold and void lock one account. No cycle can form.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ccgw.gateway.errors import BadRequest, Conflict, InsufficientFunds, PermissionDenied
from ccgw.gateway.store.base import AccountRow, AppendResult, LedgerEntry, LogEntry, SettleResult
from ccgw.gateway.store.schema import VIEW_TABLES
from ccgw.verify import ledger_rules, limits, merkle
from ccgw.verify import log_entries as le
from ccgw.verify.errors import MalformedError, ReceiptError
from ccgw.verify.ledger_rules import EXTERNAL, Effects, RuleViolation
from ccgw.verify.prices import PriceSchedule

Row = tuple[Any, ...]
NODES_PER_QUERY_MAX = 200


class Tx(Protocol):
    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    def locked(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """one(), locking the row it reads until the transaction ends (SELECT ... FOR UPDATE;
        SQLite's write transactions are exclusive already)."""
        ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def lock_ledger(self) -> None:
        """Serialise every money transaction (PostgreSQL 'ledger' lock mode); else nothing."""
        ...


@dataclass
class Context:
    """What the rules need besides the tables: the operator key (from meta) and parsed schedules
    (immutable once logged, so cached by log index)."""

    operator: bytes
    parsed: dict[int, PriceSchedule] = field(default_factory=dict)
    current: PriceSchedule | None = None


# A violation of the rules is the caller's error; its name picks the gateway error.
_REFUSALS: dict[str, type[Exception]] = {
    "negative_balance": InsufficientFunds,
    "bad_signature": PermissionDenied,
    "withdrawal_unauthorized": PermissionDenied,
    "account_key_conflict": Conflict,
    "duplicate_reference": Conflict,
    "job_logged_twice": Conflict,
    "no_price_schedule": Conflict,
}


def check(entry: le.Entry, index: int, view: SqlView) -> Effects:
    try:
        return ledger_rules.apply(entry, index, view)
    except RuleViolation as exc:
        raise _REFUSALS.get(exc.problem, BadRequest)(f"{exc.problem}: {exc}") from exc


class SqlView:
    """verify.ledger_rules.LedgerReader over one transaction."""

    def __init__(self, tx: Tx, ctx: Context) -> None:
        self._tx, self._ctx = tx, ctx

    def operator_key(self) -> bytes:
        return self._ctx.operator

    def schedule_at(self, index: int) -> PriceSchedule | None:
        row = self._tx.one(
            "SELECT log_index, body FROM schedules WHERE from_index <= ? "
            "ORDER BY from_index DESC, log_index DESC LIMIT 1",
            (index,),
        )
        return None if row is None else _schedule(self._ctx, int(row[0]), bytes(row[1]))

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
        return account_row(self._tx, account, lock=True)[0]

    def seen(self, namespace: str, key: str) -> bool:
        return (
            self._tx.one("SELECT 1 FROM uniques WHERE namespace = ? AND key = ?", (namespace, key))
            is not None
        )


def _schedule(ctx: Context, index: int, body: bytes) -> PriceSchedule:
    if index not in ctx.parsed:
        parsed = le.parse(le.Entry(le.PriceScheduleBody.KIND, body))
        assert isinstance(parsed, le.PriceScheduleBody)
        ctx.parsed[index] = parsed.schedule
    return ctx.parsed[index]


def account_row(tx: Tx, account: str, lock: bool = False) -> tuple[int, int]:
    q = "SELECT balance_micro, held_micro FROM accounts WHERE account = ?"
    row = tx.locked(q, (account,)) if lock else tx.one(q, (account,))
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- the Merkle tree -------------------------------------------------------------------------------


def head(tx: Tx, lock: bool = False) -> merkle.Frontier:
    q = "SELECT size, frontier FROM log_head WHERE id = 1"
    row = tx.locked(q) if lock else tx.one(q)
    assert row is not None, "log_head row missing"
    return merkle.Frontier.from_bytes(int(row[0]), bytes(row[1]))


def _append_leaf(tx: Tx, frontier: merkle.Frontier, entry: le.Entry) -> int:
    index = frontier.size
    leaf = entry.leaf_hash()
    tx.run(
        "INSERT INTO log_entries (idx, kind, body, entry_hash) VALUES (?, ?, ?, ?)",
        (index, entry.kind, entry.body, leaf),
    )
    tx.many("INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)", frontier.append(leaf))
    tx.run(
        "UPDATE log_head SET size = ?, frontier = ? WHERE id = 1",
        (frontier.size, frontier.to_bytes()),
    )
    return index


def nodes(tx: Tx, keys: Iterable[merkle.NodeKey]) -> dict[merkle.NodeKey, bytes]:
    out: dict[merkle.NodeKey, bytes] = {}
    todo = sorted(set(keys))
    for i in range(0, len(todo), NODES_PER_QUERY_MAX):
        part = todo[i : i + NODES_PER_QUERY_MAX]
        where = " OR ".join(["(level = ? AND idx = ?)"] * len(part))
        for level, idx, h in tx.all(
            f"SELECT level, idx, hash FROM log_nodes WHERE {where}",  # noqa: S608 - placeholders only
            [v for k in part for v in k],
        ):
            out[(int(level), int(idx))] = bytes(h)
    if len(out) != len(todo):
        raise BadRequest("the stored tree is missing nodes for this size")
    return out


def proof(tx: Tx, ranges: list[tuple[int, int]]) -> list[bytes]:
    have = nodes(tx, merkle.nodes_for(ranges))
    return [merkle.range_hash(lo, hi, have) for lo, hi in ranges]


def root(tx: Tx, size: int) -> bytes:
    return proof(tx, [(0, size)])[0] if size else merkle.root([])


# -- writes ----------------------------------------------------------------------------------------


def _record(tx: Tx, ctx: Context, index: int, entry: le.Entry, effects: Effects) -> None:
    tx.many(
        "INSERT INTO postings (seq, log_index, transfer_id, kind, job_id, account, amount_micro) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (ledger_rules.seq(index, p[0]), index, *p[1:])
            for p in ledger_rules.postings(index, effects)
        ],
    )
    tx.many(
        "INSERT INTO accounts (account, balance_micro, held_micro) VALUES (?, ?, 0) "
        "ON CONFLICT (account) DO UPDATE SET "
        "balance_micro = accounts.balance_micro + excluded.balance_micro",
        sorted(effects.balance_changes().items()),
    )
    tx.many(
        "INSERT INTO uniques (namespace, key, log_index) VALUES (?, ?, ?)",
        [(ns, key, index) for ns, key in effects.unique],
    )
    if effects.account_key is not None:
        tx.run(
            "INSERT INTO account_keys (account, log_index, public_key) VALUES (?, ?, ?)",
            (*effects.account_key[:1], index, effects.account_key[1]),
        )
    if effects.schedule is not None:
        tx.run(
            "INSERT INTO schedules (log_index, from_index, body) VALUES (?, ?, ?)",
            (index, effects.schedule.from_index, entry.body),
        )
        ctx.parsed[index] = effects.schedule


def _check_available(tx: Tx, effects: Effects) -> None:
    """A debit may not eat into what pending holds reserve."""
    for acct, delta in effects.balance_changes().items():
        if delta < 0 and acct != EXTERNAL:
            balance, held = account_row(tx, acct)
            if balance < held:
                raise InsufficientFunds(f"{acct} has {balance - held - delta} available")


def _log(tx: Tx, ctx: Context, frontier: merkle.Frontier, entry: le.Entry) -> tuple[int, Effects]:
    index = frontier.size
    effects = check(entry, index, SqlView(tx, ctx))
    _record(tx, ctx, index, entry, effects)
    _check_available(tx, effects)
    _append_leaf(tx, frontier, entry)
    return index, effects


def append(tx: Tx, ctx: Context, entry: le.Entry) -> AppendResult:
    if entry.kind == le.ReceiptBody.KIND:
        raise BadRequest("receipts are logged by settling their job")
    tx.lock_ledger()
    frontier = head(tx, lock=True)
    row = tx.one("SELECT idx FROM log_entries WHERE entry_hash = ?", (entry.leaf_hash(),))
    if row is not None:
        return AppendResult(int(row[0]), already_logged=True)
    index, _ = _log(tx, ctx, frontier, entry)
    return AppendResult(index, already_logged=False)


def ensure_schedule(tx: Tx, ctx: Context, entry_at: Callable[[int], le.Entry]) -> bool:
    tx.lock_ledger()
    frontier = head(tx, lock=True)
    if tx.one("SELECT 1 FROM schedules LIMIT 1") is not None:
        return False
    _log(tx, ctx, frontier, entry_at(frontier.size))
    return True


def hold(tx: Tx, job_id: bytes, account: str, amount_micro: int) -> None:
    if amount_micro < 0:
        raise BadRequest("a hold is not negative")
    tx.lock_ledger()
    balance, held = account_row(tx, account, lock=True)
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
    tx.run(
        "INSERT INTO holds (job_id, account, amount_micro, state, created_ms) "
        "VALUES (?, ?, ?, 'pending', ?) ON CONFLICT (job_id) DO UPDATE SET "
        "amount_micro = excluded.amount_micro, state = 'pending', created_ms = excluded.created_ms",
        (job_id, account, amount_micro, _now_ms()),
    )
    _held(tx, account, amount_micro)


def _held(tx: Tx, account: str, delta: int) -> None:
    if delta > 0:
        tx.run(
            "INSERT INTO accounts (account, balance_micro, held_micro) VALUES (?, 0, ?) "
            "ON CONFLICT (account) DO UPDATE SET "
            "held_micro = accounts.held_micro + excluded.held_micro",
            (account, delta),
        )
    elif delta < 0:
        tx.run(
            "UPDATE accounts SET held_micro = held_micro + ? WHERE account = ?", (delta, account)
        )


def void(tx: Tx, job_id: bytes) -> bool:
    tx.lock_ledger()
    row = tx.one("SELECT account FROM holds WHERE job_id = ? AND state = 'pending'", (job_id,))
    if row is None:
        return False
    account_row(tx, str(row[0]), lock=True)  # lock order: account, then hold
    row = tx.locked(
        "SELECT account, amount_micro FROM holds WHERE job_id = ? AND state = 'pending'", (job_id,)
    )
    if row is None:  # settled or voided meanwhile
        return False
    tx.run("UPDATE holds SET state = 'voided' WHERE job_id = ?", (job_id,))
    _held(tx, str(row[0]), -int(row[1]))
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
    account_row(tx, claims.account, lock=True)  # lock order: account, then hold
    held = tx.locked("SELECT account, amount_micro, state FROM holds WHERE job_id = ?", (job_id,))
    if held is None or held[2] != "pending" or held[0] != claims.account:
        raise Conflict("no pending hold for this job and account")
    tx.run("UPDATE holds SET state = 'posted' WHERE job_id = ?", (job_id,))
    _held(tx, claims.account, -int(held[1]))
    index, effects = _log(tx, ctx, frontier, entry)
    schedule = SqlView(tx, ctx).schedule_at(index)
    assert schedule is not None  # the receipt rule refused otherwise
    ctx.current = schedule
    legs = effects.transfers[0].legs
    cost = -legs[0].amount_micro if legs else 0
    return SettleResult(index, False, cost_micro=cost, fee_micro=schedule.fee_micro(cost))


def release_holds(tx: Tx, created_before_ms: int | None) -> int:
    tx.lock_ledger()
    sql = "SELECT job_id, account FROM holds WHERE state = 'pending'"
    rows = (
        tx.all(sql)
        if created_before_ms is None
        else tx.all(sql + " AND created_ms < ?", (created_before_ms,))
    )
    released = 0
    for job_id, acct in sorted(rows, key=lambda r: str(r[1])):
        account_row(tx, str(acct), lock=True)  # lock order: account, then hold
        row = tx.locked(
            "SELECT amount_micro FROM holds WHERE job_id = ? AND state = 'pending'", (job_id,)
        )
        if row is not None:
            tx.run("UPDATE holds SET state = 'voided' WHERE job_id = ?", (job_id,))
            _held(tx, str(acct), -int(row[0]))
            released += 1
    return released


# -- reads -----------------------------------------------------------------------------------------


def entries(tx: Tx, start: int, end: int) -> list[LogEntry]:
    rows = tx.all(
        "SELECT idx, kind, body FROM log_entries WHERE idx >= ? AND idx < ? ORDER BY idx",
        (start, end),
    )
    return [LogEntry(int(i), str(k), bytes(b)) for i, k, b in rows]


def receipt(tx: Tx, job_id: bytes) -> tuple[str, int] | None:
    row = tx.one(
        "SELECT u.log_index, e.body FROM uniques u JOIN log_entries e ON e.idx = u.log_index "
        "WHERE u.namespace = 'job' AND u.key = ?",
        (job_id.hex(),),
    )
    if row is None:
        return None
    body = le.parse(le.Entry(le.ReceiptBody.KIND, bytes(row[1])))
    assert isinstance(body, le.ReceiptBody)
    return body.receipt_jws, int(row[0])


def balance(tx: Tx, account: str) -> tuple[int, int]:
    total, held = account_row(tx, account)
    return total - held, held


def ledger(tx: Tx, after_seq: int, limit: int) -> list[LedgerEntry]:
    rows = tx.all(
        "SELECT seq, log_index, transfer_id, kind, job_id, account, amount_micro FROM postings "
        "WHERE seq > ? ORDER BY seq LIMIT ?",
        (after_seq, limit),
    )
    return [
        LedgerEntry(int(s), int(i), str(t), str(k), str(j), str(a), int(m))
        for s, i, t, k, j, a, m in rows
    ]


def accounts(tx: Tx, after: str, limit: int) -> tuple[int, list[AccountRow]]:
    size = head(tx).size
    rows = tx.all(
        "SELECT account, balance_micro, held_micro FROM accounts WHERE account > ? "
        "ORDER BY account LIMIT ?",
        (after, limit),
    )
    return size, [AccountRow(str(a), int(b), int(h)) for a, b, h in rows]


def latest_schedule(tx: Tx, ctx: Context) -> PriceSchedule | None:
    ctx.current = SqlView(tx, ctx).schedule_at(head(tx).size)
    return ctx.current


def all_schedules(tx: Tx, ctx: Context) -> list[PriceSchedule]:
    rows = tx.all("SELECT log_index, body FROM schedules ORDER BY log_index")
    return [_schedule(ctx, int(i), bytes(b)) for i, b in rows]


# -- rebuild ---------------------------------------------------------------------------------------

REBUILD_PAGE_ENTRIES = 1_000


def rebuild(tx: Tx, ctx: Context) -> int:
    """Replay every entry through the rules into empty view tables and a fresh tree."""
    tx.lock_ledger()
    head(tx, lock=True)
    for table in (*VIEW_TABLES, "log_nodes"):
        tx.run(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    ctx.parsed.clear()
    frontier = merkle.Frontier()
    start = 0
    while page := entries(tx, start, start + REBUILD_PAGE_ENTRIES):
        for e in page:
            if e.index != frontier.size:
                raise BadRequest(f"the log has no entry {frontier.size}")
            entry = e.entry
            _record(tx, ctx, e.index, entry, check(entry, e.index, SqlView(tx, ctx)))
            tx.many(
                "INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)",
                frontier.append(entry.leaf_hash()),
            )
        start += len(page)
    tx.run(
        "UPDATE log_head SET size = ?, frontier = ? WHERE id = 1",
        (frontier.size, frontier.to_bytes()),
    )
    for acct, amount in tx.all(
        "SELECT account, SUM(amount_micro) FROM holds WHERE state = 'pending' GROUP BY account"
    ):
        _held(tx, str(acct), int(amount))
    return frontier.size
