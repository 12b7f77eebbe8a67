"""PostgreSQL implementation of the Store, for several gateway replicas on one database.

Same semantics as the SQLite store. Across replicas:
- the log order is total: settle locks the single `log_head` row (FOR UPDATE) and takes the next
  index in the same transaction as the receipt, the leaf hash and the transfers;
- balance checks cannot race and replicas cannot deadlock: every transaction that moves money
  (deposit, withdraw, hold, settle, void) first takes one transaction-scoped advisory lock, so
  they share a single lock order and a total order (per-account locks would raise throughput: a
  later change, to be measured first);
- a replica cannot know which holds another replica still serves, so at start-up only holds older
  than the job deadline (they cannot be live any more) are released.
Transactions that fail to serialize are retried at most `RETRIES_MAX` times.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from ccgw.gateway.errors import BadRequest, Conflict, InsufficientFunds
from ccgw.gateway.store.base import LedgerEntry, LogEntry, SettleResult
from ccgw.verify.merkle import leaf_hash, receipt_leaf

EXTERNAL = "external"
RETRIES_MAX = 5
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transfers (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, job_id BYTEA, created_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id BIGSERIAL PRIMARY KEY, transfer_id TEXT NOT NULL REFERENCES transfers(id),
    account TEXT NOT NULL, amount_micro BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS entries_account ON entries(account);
CREATE TABLE IF NOT EXISTS holds (
    job_id BYTEA PRIMARY KEY, account TEXT NOT NULL,
    amount_micro BIGINT NOT NULL CHECK (amount_micro >= 0),
    state TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
    created_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    job_id BYTEA PRIMARY KEY, log_index BIGINT NOT NULL UNIQUE, leaf_hash BYTEA NOT NULL,
    jws TEXT NOT NULL, evidence_sha256 TEXT NOT NULL, provider TEXT NOT NULL, client TEXT NOT NULL,
    cost_micro BIGINT NOT NULL, fee_micro BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS log_head (id INT PRIMARY KEY CHECK (id = 1), size BIGINT NOT NULL);
INSERT INTO log_head VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS checkpoints (size BIGINT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evidence (digest TEXT PRIMARY KEY, bundle BYTEA NOT NULL);
"""


def _now_ms() -> int:
    return int(time.time() * 1000)


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        schema: str = "ccgw",
        network_account: str = "network:fee",
        stale_hold_s: float = 600.0,
    ) -> None:
        self._conn = psycopg.connect(dsn, autocommit=False)
        self._lock = threading.Lock()
        self._network = network_account
        self._stale_hold_ms = int(stale_hold_s * 1000)
        with self._conn.cursor() as cur:
            cur.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            # DDL takes table locks even when nothing is created: run it only on a new database,
            # so a replica starting up never blocks (or deadlocks with) one that is settling.
            cur.execute("SELECT to_regclass('log_head')")
            if cur.fetchone()[0] is None:  # type: ignore[index]
                cur.execute("SELECT pg_advisory_xact_lock(hashtext('ccgw-schema'))")  # until commit
                cur.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
                cur.execute(_SCHEMA)
        self._conn.commit()

    async def _run(self, fn: Callable[[psycopg.Cursor[Any]], T]) -> T:
        def tx() -> T:
            with self._lock:
                for attempt in range(RETRIES_MAX):
                    try:
                        with self._conn.cursor() as cur:
                            out = fn(cur)
                        self._conn.commit()
                        return out
                    except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
                        self._conn.rollback()
                        if attempt + 1 == RETRIES_MAX:
                            raise
                    except BaseException:
                        self._conn.rollback()
                        raise
                raise AssertionError("unreachable")

        return await asyncio.to_thread(tx)

    @staticmethod
    def _lock_ledger(cur: psycopg.Cursor[Any]) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('ccgw-ledger'))")

    @staticmethod
    def _balance(cur: psycopg.Cursor[Any], account: str) -> tuple[int, int]:
        cur.execute(
            "SELECT COALESCE(SUM(amount_micro), 0) FROM entries WHERE account = %s", (account,)
        )
        total = int(cur.fetchone()[0])  # type: ignore[index]
        cur.execute(
            "SELECT COALESCE(SUM(amount_micro), 0) FROM holds WHERE account = %s AND state = 'pending'",
            (account,),
        )
        held = int(cur.fetchone()[0])  # type: ignore[index]
        return total - held, held

    @staticmethod
    def _transfer(
        cur: psycopg.Cursor[Any],
        tid: str,
        kind: str,
        job_id: bytes | None,
        legs: list[tuple[str, int]],
    ) -> bool:
        if sum(a for _, a in legs) != 0:
            raise AssertionError("unbalanced transfer")
        cur.execute(
            "INSERT INTO transfers (id, kind, job_id, created_ms) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING",
            (tid, kind, job_id, _now_ms()),
        )
        if cur.rowcount == 0:
            return False
        for acct, amt in legs:
            if amt:
                cur.execute(
                    "INSERT INTO entries (transfer_id, account, amount_micro) VALUES (%s, %s, %s)",
                    (tid, acct, amt),
                )
        return True

    async def deposit(self, account: str, amount_micro: int, transfer_id: str) -> None:
        if amount_micro <= 0 or account == EXTERNAL:
            raise BadRequest("deposit must be positive, to a real account")

        def fn(cur: psycopg.Cursor[Any]) -> None:
            self._lock_ledger(cur)
            self._transfer(
                cur,
                transfer_id,
                "deposit",
                None,
                [(EXTERNAL, -amount_micro), (account, amount_micro)],
            )

        await self._run(fn)

    async def withdraw(self, account: str, amount_micro: int, transfer_id: str) -> None:
        if amount_micro <= 0 or account == EXTERNAL:
            raise BadRequest("withdrawal must be positive, from a real account")

        def fn(cur: psycopg.Cursor[Any]) -> None:
            self._lock_ledger(cur)
            cur.execute("SELECT 1 FROM transfers WHERE id = %s", (transfer_id,))
            if cur.fetchone():
                return
            available, _ = self._balance(cur, account)
            if available < amount_micro:
                raise InsufficientFunds(f"{account} has {available} available")
            self._transfer(
                cur,
                transfer_id,
                "withdrawal",
                None,
                [(account, -amount_micro), (EXTERNAL, amount_micro)],
            )

        await self._run(fn)

    async def hold(self, job_id: bytes, account: str, amount_micro: int) -> None:
        def fn(cur: psycopg.Cursor[Any]) -> None:
            self._lock_ledger(cur)
            cur.execute("SELECT account, state FROM holds WHERE job_id = %s FOR UPDATE", (job_id,))
            row = cur.fetchone()
            if row is not None:
                if row[1] == "posted":
                    raise Conflict("job already settled")
                if row[1] == "pending":
                    raise Conflict("job already in flight")
                if row[0] != account:
                    raise Conflict("job id belongs to another account")
            available, _ = self._balance(cur, account)
            if available < amount_micro:
                raise InsufficientFunds(
                    f"job may cost up to {amount_micro} micro-tokens; {available} available"
                )
            cur.execute(
                "INSERT INTO holds (job_id, account, amount_micro, state, created_ms) "
                "VALUES (%s, %s, %s, 'pending', %s) ON CONFLICT (job_id) DO UPDATE SET "
                "amount_micro = EXCLUDED.amount_micro, state = 'pending', created_ms = EXCLUDED.created_ms",
                (job_id, account, amount_micro, _now_ms()),
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

        def fn(cur: psycopg.Cursor[Any]) -> SettleResult:
            self._lock_ledger(cur)
            cur.execute("SELECT size FROM log_head WHERE id = 1 FOR UPDATE")  # total log order
            size = int(cur.fetchone()[0])  # type: ignore[index]
            cur.execute("SELECT log_index FROM receipts WHERE job_id = %s", (job_id,))
            row = cur.fetchone()
            if row is not None:
                return SettleResult(log_index=int(row[0]), already_settled=True)
            cur.execute(
                "SELECT account, amount_micro, state FROM holds WHERE job_id = %s FOR UPDATE",
                (job_id,),
            )
            hold = cur.fetchone()
            if hold is None or hold[2] != "pending" or hold[0] != client_account:
                raise Conflict("no pending hold for this job and account")
            if cost_micro > hold[1]:
                raise Conflict("receipt cost exceeds the job's hold")
            cur.execute(
                "INSERT INTO receipts VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
            cur.execute("UPDATE log_head SET size = size + 1 WHERE id = 1")
            cur.execute("UPDATE holds SET state = 'posted' WHERE job_id = %s", (job_id,))
            self._transfer(
                cur,
                "reward:" + job_id.hex(),
                "reward",
                job_id,
                [
                    (client_account, -cost_micro),
                    (provider_account, cost_micro - fee_micro),
                    (self._network, fee_micro),
                ],
            )
            return SettleResult(log_index=size, already_settled=False)

        return await self._run(fn)

    async def void(self, job_id: bytes) -> None:
        def fn(cur: psycopg.Cursor[Any]) -> None:
            self._lock_ledger(cur)
            cur.execute(
                "UPDATE holds SET state = 'voided' WHERE job_id = %s AND state = 'pending'",
                (job_id,),
            )

        await self._run(fn)

    async def release_orphaned_holds(self) -> int:
        def fn(cur: psycopg.Cursor[Any]) -> int:
            cur.execute(
                "UPDATE holds SET state = 'voided' WHERE state = 'pending' AND created_ms < %s",
                (_now_ms() - self._stale_hold_ms,),
            )
            return int(cur.rowcount)

        return await self._run(fn)

    async def balance(self, account: str) -> tuple[int, int]:
        return await self._run(lambda cur: self._balance(cur, account))

    async def receipt(self, job_id: bytes) -> tuple[str, int] | None:
        def fn(cur: psycopg.Cursor[Any]) -> tuple[str, int] | None:
            cur.execute("SELECT jws, log_index FROM receipts WHERE job_id = %s", (job_id,))
            row = cur.fetchone()
            return None if row is None else (str(row[0]), int(row[1]))

        return await self._run(fn)

    async def log_size(self) -> int:
        def fn(cur: psycopg.Cursor[Any]) -> int:
            cur.execute("SELECT size FROM log_head WHERE id = 1")
            return int(cur.fetchone()[0])  # type: ignore[index]

        return await self._run(fn)

    async def leaf_hashes(self, size: int) -> list[bytes]:
        def fn(cur: psycopg.Cursor[Any]) -> list[bytes]:
            cur.execute(
                "SELECT leaf_hash FROM receipts WHERE log_index < %s ORDER BY log_index", (size,)
            )
            return [bytes(r[0]) for r in cur.fetchall()]

        return await self._run(fn)

    async def entries(self, start: int, end: int) -> list[LogEntry]:
        def fn(cur: psycopg.Cursor[Any]) -> list[LogEntry]:
            cur.execute(
                "SELECT log_index, jws, evidence_sha256 FROM receipts "
                "WHERE log_index >= %s AND log_index < %s ORDER BY log_index",
                (start, end),
            )
            return [LogEntry(int(i), str(j), str(e)) for i, j, e in cur.fetchall()]

        return await self._run(fn)

    async def add_checkpoint(self, size: int, text: str) -> None:
        await self._run(
            lambda cur: cur.execute(
                "INSERT INTO checkpoints VALUES (%s, %s) ON CONFLICT DO NOTHING", (size, text)
            )
        )

    async def latest_checkpoint(self) -> tuple[int, str] | None:
        def fn(cur: psycopg.Cursor[Any]) -> tuple[int, str] | None:
            cur.execute("SELECT size, text FROM checkpoints ORDER BY size DESC LIMIT 1")
            row = cur.fetchone()
            return None if row is None else (int(row[0]), str(row[1]))

        return await self._run(fn)

    async def add_evidence(self, digest: str, bundle: bytes) -> None:
        await self._run(
            lambda cur: cur.execute(
                "INSERT INTO evidence VALUES (%s, %s) ON CONFLICT DO NOTHING", (digest, bundle)
            )
        )

    async def evidence(self, digest: str) -> bytes | None:
        def fn(cur: psycopg.Cursor[Any]) -> bytes | None:
            cur.execute("SELECT bundle FROM evidence WHERE digest = %s", (digest,))
            row = cur.fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(fn)

    async def ledger(self, start: int, end: int) -> list[LedgerEntry]:
        def fn(cur: psycopg.Cursor[Any]) -> list[LedgerEntry]:
            cur.execute(
                "SELECT e.id, e.transfer_id, t.kind, t.job_id, e.account, e.amount_micro "
                "FROM entries e JOIN transfers t ON t.id = e.transfer_id "
                "WHERE e.id > %s ORDER BY e.id LIMIT %s",
                (start, max(0, end - start)),
            )
            return [
                LedgerEntry(int(i), str(t), str(k), bytes(j).hex() if j else "", str(a), int(m))
                for i, t, k, j, a, m in cur.fetchall()
            ]

        return await self._run(fn)

    async def close(self) -> None:
        with self._lock:
            self._conn.close()
