"""Reads of the log and the ledger view, each inside one (snapshot) transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccgw.gateway.store.base import AccountRow, LedgerEntry, LogEntry
from ccgw.gateway.store.tree import head
from ccgw.verify import log_entries as le
from ccgw.verify.prices import PriceSchedule

if TYPE_CHECKING:
    from ccgw.gateway.store.rules import Context, Tx


def entries(tx: Tx, start: int, end: int) -> list[LogEntry]:
    rows = tx.all(
        "SELECT idx, kind, body FROM log_entries WHERE idx >= ? AND idx < ? ORDER BY idx",
        (start, end),
    )
    return [LogEntry(int(i), str(k), bytes(b)) for i, k, b in rows]


def release_entries(tx: Tx, after: int, limit: int) -> list[LogEntry]:
    """Release and revocation entries at indexes >= `after`, in log order, at most `limit`
    (through the uniques index their rule writes: no scan of the log)."""
    rows = tx.all(
        "SELECT e.idx, e.kind, e.body FROM uniques u JOIN log_entries e ON e.idx = u.log_index "
        "WHERE u.namespace IN ('release', 'revocation') AND u.log_index >= ? "
        "ORDER BY u.log_index LIMIT ?",
        (after, limit),
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
    row = tx.one("SELECT balance_micro, held_micro FROM accounts WHERE account = ?", (account,))
    total, held = (0, 0) if row is None else (int(row[0]), int(row[1]))
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
    from ccgw.gateway.store.rules import Ledger

    ctx.current = Ledger(tx, ctx).schedule_at(head(tx).size)
    return ctx.current


def all_schedules(tx: Tx, ctx: Context) -> list[PriceSchedule]:
    from ccgw.gateway.store.rules import _schedule

    rows = tx.all("SELECT log_index, body FROM schedules ORDER BY log_index")
    return [_schedule(ctx, bytes(b)) for _, b in rows]
