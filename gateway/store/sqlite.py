"""SQLite implementation of the Store (embedded default: WAL, synchronous=FULL).

One connection guarded by a lock; each operation is one IMMEDIATE transaction run off the event
loop. Money moves only as balanced transfers (entries of one transfer sum to zero); deposits and
withdrawals balance against the `external` account, so the sum of all non-external balances
changes only through them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ccgw.gateway.errors import BadRequest, Conflict, InsufficientFunds
from ccgw.gateway.store.base import LedgerEntry, LogEntry, SettleResult
from ccgw.verify.merkle import leaf_hash, receipt_leaf

EXTERNAL = "external"
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,           -- deposit | withdrawal | reward
    job_id BLOB,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    transfer_id TEXT NOT NULL REFERENCES transfers(id),
    account TEXT NOT NULL,
    amount_micro INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_account ON entries(account);
CREATE TABLE IF NOT EXISTS holds (
    job_id BLOB PRIMARY KEY,
    account TEXT NOT NULL,
    amount_micro INTEGER NOT NULL CHECK (amount_micro >= 0),
    state TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided'))
);
CREATE TABLE IF NOT EXISTS receipts (
    job_id BLOB PRIMARY KEY,
    log_index INTEGER NOT NULL UNIQUE,
    leaf_hash BLOB NOT NULL,
    jws TEXT NOT NULL,
    evidence_sha256 TEXT NOT NULL,
    provider TEXT NOT NULL,
    client TEXT NOT NULL,
    cost_micro INTEGER NOT NULL,
    fee_micro INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    digest TEXT PRIMARY KEY,
    bundle BLOB NOT NULL
);
"""


class SqliteStore:
    def __init__(self, path: Path | str, network_account: str = "network:fee") -> None:
        self._network = network_account
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SCHEMA)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def tx() -> T:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(self._conn)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                return out

        return await asyncio.to_thread(tx)

    @staticmethod
    def _balance(c: sqlite3.Connection, account: str) -> tuple[int, int]:
        (total,) = c.execute(
            "SELECT COALESCE(SUM(amount_micro), 0) FROM entries WHERE account = ?", (account,)
        ).fetchone()
        (held,) = c.execute(
            "SELECT COALESCE(SUM(amount_micro), 0) FROM holds WHERE account = ? AND state = 'pending'",
            (account,),
        ).fetchone()
        return int(total) - int(held), int(held)

    @staticmethod
    def _transfer(
        c: sqlite3.Connection,
        tid: str,
        kind: str,
        job_id: bytes | None,
        legs: list[tuple[str, int]],
    ) -> bool:
        """Insert a balanced transfer; False if the id exists already (idempotent)."""
        if sum(a for _, a in legs) != 0:
            raise AssertionError("unbalanced transfer")
        if c.execute("SELECT 1 FROM transfers WHERE id = ?", (tid,)).fetchone():
            return False
        c.execute(
            "INSERT INTO transfers (id, kind, job_id, created_ms) VALUES (?, ?, ?, ?)",
            (tid, kind, job_id, int(time.time() * 1000)),
        )
        c.executemany(
            "INSERT INTO entries (transfer_id, account, amount_micro) VALUES (?, ?, ?)",
            [(tid, acct, amt) for acct, amt in legs if amt],
        )
        return True

    async def deposit(self, account: str, amount_micro: int, transfer_id: str) -> None:
        if amount_micro <= 0 or account == EXTERNAL:
            raise BadRequest("deposit must be positive, to a real account")

        def fn(c: sqlite3.Connection) -> None:
            self._transfer(
                c,
                transfer_id,
                "deposit",
                None,
                [(EXTERNAL, -amount_micro), (account, amount_micro)],
            )

        await self._run(fn)

    async def withdraw(self, account: str, amount_micro: int, transfer_id: str) -> None:
        if amount_micro <= 0 or account == EXTERNAL:
            raise BadRequest("withdrawal must be positive, from a real account")

        def fn(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM transfers WHERE id = ?", (transfer_id,)).fetchone():
                return
            available, _ = self._balance(c, account)
            if available < amount_micro:
                raise InsufficientFunds(f"{account} has {available} available")
            self._transfer(
                c,
                transfer_id,
                "withdrawal",
                None,
                [(account, -amount_micro), (EXTERNAL, amount_micro)],
            )

        await self._run(fn)

    async def hold(self, job_id: bytes, account: str, amount_micro: int) -> None:
        def fn(c: sqlite3.Connection) -> None:
            row = c.execute(
                "SELECT account, state FROM holds WHERE job_id = ?", (job_id,)
            ).fetchone()
            if row is not None:
                if row[1] == "posted":
                    raise Conflict("job already settled")
                if row[1] == "pending":
                    raise Conflict("job already in flight")
                if row[0] != account:
                    raise Conflict("job id belongs to another account")
            available, _ = self._balance(c, account)
            if available < amount_micro:
                raise InsufficientFunds(
                    f"job may cost up to {amount_micro} micro-tokens; {available} available"
                )
            c.execute(
                "INSERT INTO holds (job_id, account, amount_micro, state) VALUES (?, ?, ?, 'pending') "
                "ON CONFLICT(job_id) DO UPDATE SET amount_micro = excluded.amount_micro, "
                "state = 'pending'",
                (job_id, account, amount_micro),
            )

        await self._run(fn)

    async def settle(
        self,
        job_id: bytes,
        *,
        receipt_jws: str,
        provider_account: str,
        client_account: str,
        cost_micro: int,
        fee_micro: int,
        evidence_sha256: str,
    ) -> SettleResult:
        if not 0 <= fee_micro <= cost_micro:
            raise BadRequest("fee must be within 0..cost")

        def fn(c: sqlite3.Connection) -> SettleResult:
            row = c.execute("SELECT log_index FROM receipts WHERE job_id = ?", (job_id,)).fetchone()
            if row is not None:
                return SettleResult(log_index=int(row[0]), already_settled=True)
            hold = c.execute(
                "SELECT account, amount_micro, state FROM holds WHERE job_id = ?", (job_id,)
            ).fetchone()
            if hold is None or hold[2] != "pending" or hold[0] != client_account:
                raise Conflict("no pending hold for this job and account")
            if cost_micro > hold[1]:
                raise Conflict("receipt cost exceeds the job's hold")
            (size,) = c.execute("SELECT COUNT(*) FROM receipts").fetchone()
            c.execute(
                "INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    size,
                    leaf_hash(receipt_leaf(receipt_jws, evidence_sha256)),
                    receipt_jws,
                    evidence_sha256,
                    provider_account,
                    client_account,
                    cost_micro,
                    fee_micro,
                ),
            )
            c.execute("UPDATE holds SET state = 'posted' WHERE job_id = ?", (job_id,))
            self._transfer(
                c,
                "reward:" + job_id.hex(),
                "reward",
                job_id,
                [
                    (client_account, -cost_micro),
                    (provider_account, cost_micro - fee_micro),
                    (self._network, fee_micro),
                ],
            )
            return SettleResult(log_index=int(size), already_settled=False)

        return await self._run(fn)

    async def void(self, job_id: bytes) -> None:
        def fn(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE holds SET state = 'voided' WHERE job_id = ? AND state = 'pending'",
                (job_id,),
            )

        await self._run(fn)

    async def release_orphaned_holds(self) -> int:
        # One process owns an SQLite ledger, so every pending hold at start-up is orphaned.
        def fn(c: sqlite3.Connection) -> int:
            return c.execute("UPDATE holds SET state = 'voided' WHERE state = 'pending'").rowcount

        return await self._run(fn)

    async def balance(self, account: str) -> tuple[int, int]:
        return await self._run(lambda c: self._balance(c, account))

    async def receipt(self, job_id: bytes) -> tuple[str, int] | None:
        def fn(c: sqlite3.Connection) -> tuple[str, int] | None:
            row = c.execute(
                "SELECT jws, log_index FROM receipts WHERE job_id = ?", (job_id,)
            ).fetchone()
            return None if row is None else (str(row[0]), int(row[1]))

        return await self._run(fn)

    async def log_size(self) -> int:
        return await self._run(
            lambda c: int(c.execute("SELECT COUNT(*) FROM receipts").fetchone()[0])
        )

    async def leaf_hashes(self, size: int) -> list[bytes]:
        def fn(c: sqlite3.Connection) -> list[bytes]:
            rows = c.execute(
                "SELECT leaf_hash FROM receipts WHERE log_index < ? ORDER BY log_index", (size,)
            ).fetchall()
            return [bytes(r[0]) for r in rows]

        return await self._run(fn)

    async def entries(self, start: int, end: int) -> list[LogEntry]:
        def fn(c: sqlite3.Connection) -> list[LogEntry]:
            rows = c.execute(
                "SELECT log_index, jws, evidence_sha256 FROM receipts "
                "WHERE log_index >= ? AND log_index < ? ORDER BY log_index",
                (start, end),
            ).fetchall()
            return [LogEntry(int(i), str(j), str(e)) for i, j, e in rows]

        return await self._run(fn)

    async def add_checkpoint(self, size: int, text: str) -> None:
        await self._run(
            lambda c: c.execute("INSERT OR IGNORE INTO checkpoints VALUES (?, ?)", (size, text))
        )

    async def latest_checkpoint(self) -> tuple[int, str] | None:
        def fn(c: sqlite3.Connection) -> tuple[int, str] | None:
            row = c.execute(
                "SELECT size, text FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
            return None if row is None else (int(row[0]), str(row[1]))

        return await self._run(fn)

    async def add_evidence(self, digest: str, bundle: bytes) -> None:
        await self._run(
            lambda c: c.execute("INSERT OR IGNORE INTO evidence VALUES (?, ?)", (digest, bundle))
        )

    async def evidence(self, digest: str) -> bytes | None:
        def fn(c: sqlite3.Connection) -> bytes | None:
            row = c.execute("SELECT bundle FROM evidence WHERE digest = ?", (digest,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(fn)

    async def ledger(self, start: int, end: int) -> list[LedgerEntry]:
        def fn(c: sqlite3.Connection) -> list[LedgerEntry]:
            rows = c.execute(
                "SELECT e.id, e.transfer_id, t.kind, t.job_id, e.account, e.amount_micro "
                "FROM entries e JOIN transfers t ON t.id = e.transfer_id "
                "WHERE e.id > ? ORDER BY e.id LIMIT ?",
                (start, max(0, end - start)),
            ).fetchall()
            return [
                LedgerEntry(int(i), str(t), str(k), bytes(j).hex() if j else "", str(a), int(m))
                for i, t, k, j, a, m in rows
            ]

        return await self._run(fn)

    async def close(self) -> None:
        with self._lock:
            self._conn.close()
