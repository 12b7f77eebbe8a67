"""PostgreSQL backend, for several gateway replicas on one database.

- Writes are group-committed (gateway.store.groupcommit): a batch is one transaction that first
  takes one ledger-wide advisory lock, so batches of all replicas run one at a time (no lock cycles
  can form) and one commit serves the whole batch. Measured against one lock per transaction and
  against per-account row locks (bench/ledger_lock_bench.py, docs/benchmarks.md) it was the
  fastest; `lock_mode="ledger"` / `"account"` keep those two for that benchmark only;
- rows a write will change are still read FOR UPDATE (gateway.store.rules' lock order), and its
  writes travel in one pipeline;
- a write the rules refuse before it wrote anything (the rules read and decide first, then write in
  one pipeline) leaves its batch's transaction as it was, so a batch runs without a savepoint per
  write (two round trips each); only when a write fails after writing, or the database refuses a
  statement, is the batch rolled back and run again with one savepoint per write;
- connections come from a pool (`pool_connections_max`), each used by one thread at a time;
- reads run as REPEATABLE READ, READ ONLY transactions: one snapshot per call;
- a transaction that deadlocks or fails to serialise is retried at most `RETRIES_MAX` times.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import sql

from ccgw.gateway.errors import NotFound
from ccgw.gateway.store import schema
from ccgw.gateway.store.groupcommit import GroupCommit, Outcome
from ccgw.gateway.store.sqlstore import SqlStore

RETRIES_MAX = 5
T = TypeVar("T")
LockMode = Literal["group", "account", "ledger"]
_SQL: dict[str, str] = {}


def _pg(q: str) -> str:
    out = _SQL.get(q)
    if out is None:
        out = _SQL[q] = q.replace("?", "%s")
    return out


class _Tx:
    def __init__(self, cur: psycopg.Cursor[Any], ledger_lock: bool) -> None:
        self._cur, self._ledger_lock = cur, ledger_lock
        self.wrote = False  # a statement that may change rows was sent (run, many, batch)

    def one(self, q: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._note(q)
        self._cur.execute(_pg(q), params)
        row: tuple[Any, ...] | None = self._cur.fetchone()
        return row

    def locked(self, q: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self.one(q + " FOR UPDATE", params)

    def all(self, q: str, params: Sequence[Any] = (), lock: bool = False) -> list[tuple[Any, ...]]:
        self._note(q)
        self._cur.execute(_pg(q + " FOR UPDATE" if lock else q), params)
        return self._cur.fetchall()

    def _note(self, q: str) -> None:
        """Anything but a plain SELECT read through one()/all() (INSERT ... RETURNING, a CTE
        that writes) counts as a write."""
        if q.lstrip()[:6].upper() != "SELECT":
            self.wrote = True

    def batch(self) -> AbstractContextManager[Any]:
        self.wrote = True
        return self._cur.connection.pipeline()

    def run(self, q: str, params: Sequence[Any] = ()) -> int:
        self.wrote = True
        self._cur.execute(_pg(q), params)
        return int(self._cur.rowcount)

    def many(self, q: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        self.wrote = True
        if rows:
            self._cur.executemany(_pg(q), rows)

    def lock_ledger(self) -> None:
        if self._ledger_lock:
            self._cur.execute("SELECT pg_advisory_xact_lock(hashtext('ccgw-ledger'))")
            self._ledger_lock = False  # held until the transaction ends


def _connect(dsn: str, schema_name: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=False)
    conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema_name)))
    conn.commit()
    return conn


class _Pool:
    """At most `size` connections, opened on demand, handed to one thread at a time."""

    def __init__(self, dsn: str, schema_name: str, size: int) -> None:
        self._dsn, self._schema, self._size = dsn, schema_name, size
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._opened = 0
        self._lock = threading.Lock()

    def get(self) -> psycopg.Connection[Any]:
        with self._lock:
            if self._idle.empty() and self._opened < self._size:
                self._opened += 1
                grow = True
            else:
                grow = False
        if grow:
            try:
                return _connect(self._dsn, self._schema)
            except BaseException:
                with self._lock:
                    self._opened -= 1
                raise
        return self._idle.get()

    def put(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
            with self._lock:
                self._opened -= 1
            return
        self._idle.put(conn)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get().close()


_LEDGER_LOCK = "SELECT pg_advisory_xact_lock(hashtext('ccgw-ledger'))"
_ASYNC_COMMIT = "SET LOCAL synchronous_commit TO OFF; "  # this transaction only


class _NeedsSavepoints(Exception):
    """A write failed after writing (or the database refused a statement): run the batch again,
    one savepoint per write."""


class PostgresBackend:
    shared = True

    def __init__(
        self,
        dsn: str,
        schema_name: str,
        pool_size: int,
        lock_mode: LockMode,
        write_batch_max: int = 64,
    ) -> None:
        self._pool = _Pool(dsn, schema_name, pool_size)
        self._executor = ThreadPoolExecutor(pool_size, thread_name_prefix="ccgw-pg")
        self._mode = lock_mode
        self._ledger_lock = lock_mode == "ledger"
        self._group: GroupCommit[_Tx] = GroupCommit(self.run_batch, write_batch_max)

    def run_batch(self, fns: list[Callable[[_Tx], Any]], durable: bool = True) -> list[Outcome]:
        """Writes in one transaction behind the ledger lock. A batch that is not `durable` (hold
        reservations only) commits with synchronous_commit off: it does not wait for the WAL
        flush; a crash of the server may drop it, and only with every commit after it (ADR 11)."""
        # Batches of all replicas, one at a time: no lock cycles (one round trip with the SET).
        begin = _LEDGER_LOCK if durable else _ASYNC_COMMIT + _LEDGER_LOCK

        def optimistic(tx: _Tx) -> list[Outcome]:
            tx.run(begin)
            return [self._unguarded(tx, fn) for fn in fns]

        def guarded(tx: _Tx) -> list[Outcome]:
            tx.run(begin)
            return [self._one(tx, fn) for fn in fns]

        try:
            return self._run(optimistic, read_only=False)
        except _NeedsSavepoints:
            return self._run(guarded, read_only=False)

    @staticmethod
    def _unguarded(tx: _Tx, fn: Callable[[_Tx], Any]) -> Outcome:
        """A write without a savepoint: its refusal is its caller's only if it changed nothing."""
        tx.wrote = False
        try:
            return Outcome(fn(tx))
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            raise  # the whole batch is retried
        except psycopg.Error as exc:  # the transaction is aborted: nothing of it can commit
            raise _NeedsSavepoints from exc
        except Exception as exc:  # handed to this write's caller unless it wrote
            if tx.wrote:
                raise _NeedsSavepoints from exc
            return Outcome(error=exc)

    @staticmethod
    def _one(tx: _Tx, fn: Callable[[_Tx], Any]) -> Outcome:
        tx.run("SAVEPOINT w")
        try:
            out = Outcome(fn(tx))
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            raise  # the whole batch is retried
        except Exception as exc:  # noqa: BLE001 - handed to this write's caller
            tx.run("ROLLBACK TO SAVEPOINT w")
            out = Outcome(error=exc)
        tx.run("RELEASE SAVEPOINT w")
        return out

    def _run(self, fn: Callable[[_Tx], T], read_only: bool) -> T:
        conn = self._pool.get()
        try:
            for attempt in range(RETRIES_MAX):
                try:
                    with conn.cursor() as cur:
                        if read_only:
                            cur.execute(
                                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
                            )
                        out = fn(_Tx(cur, self._ledger_lock and not read_only))
                    conn.commit()
                    return out
                except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
                    conn.rollback()
                    if attempt + 1 == RETRIES_MAX:
                        raise
                except BaseException:
                    conn.rollback()
                    raise
            raise AssertionError("unreachable")
        finally:
            self._pool.put(conn)

    def read_now(self, fn: Callable[[_Tx], T]) -> T:
        return self._run(fn, read_only=True)

    async def write(self, fn: Callable[[_Tx], T], durable: bool = True) -> T:
        if self._mode == "group":
            return await self._group.submit(fn, durable)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._run, fn, False
        )

    async def read(self, fn: Callable[[_Tx], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, fn, True)

    async def close(self) -> None:
        await self._group.wait_idle()
        self._executor.shutdown(wait=True)
        self._pool.close()


def _create_if_missing(dsn: str, schema_name: str, operator: bytes | None, create: bool) -> None:
    with _connect(dsn, schema_name) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('meta'), to_regclass('log_head')")
        row = cur.fetchone()
        if row is not None and (row[0] or row[1]):
            return  # initialised (or another format: refused by operator_of); no DDL on start-up
        if not create:
            raise NotFound(f"no ccgw tables in schema {schema_name!r} (create with `ccgw init-db`)")
        if operator is None:
            raise NotFound("a new database needs the operator (log) public key")
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('ccgw-schema'))")  # until commit
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema_name)))
        cur.execute("SELECT to_regclass('meta')")
        if cur.fetchone()[0] is None:  # type: ignore[index]  # not created by a racing replica
            schema.initialise(_Tx(cur, False), schema.POSTGRES, operator)


def open_postgres(
    dsn: str,
    *,
    schema_name: str = "ccgw",
    operator: bytes | None = None,
    create: bool = False,
    pool_connections_max: int = 8,
    stale_hold_s: float = 600.0,
    lock_mode: LockMode = "group",
    write_batch_max: int = 64,
) -> SqlStore:
    _create_if_missing(dsn, schema_name, operator, create)
    backend = PostgresBackend(dsn, schema_name, pool_connections_max, lock_mode, write_batch_max)
    owner = backend.read_now(lambda tx: schema.operator_of(tx, operator, f"schema {schema_name}"))
    return SqlStore(backend, owner, stale_hold_s)
