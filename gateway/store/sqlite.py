"""SQLite backend (embedded default): WAL, synchronous=FULL (a batch of hold reservations only
commits at synchronous=NORMAL: no fsync; see GroupCommit and ADR 11). One writer connection (writes are
group-committed: each batch one IMMEDIATE transaction, so writes are serialised and need no row
locks) and one reader connection (reads see a snapshot and never wait behind a write), both used
off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from ccgw.gateway.errors import NotFound
from ccgw.gateway.store import schema
from ccgw.gateway.store.groupcommit import GroupCommit, Outcome
from ccgw.gateway.store.sqlstore import SqlStore

T = TypeVar("T")


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._c.execute(sql, params).fetchone()
        return row

    def locked(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self.one(sql, params)  # an IMMEDIATE transaction excludes every other writer

    def all(
        self, sql: str, params: Sequence[Any] = (), lock: bool = False
    ) -> list[tuple[Any, ...]]:
        return self._c.execute(sql, params).fetchall()

    def batch(self) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._c.execute(sql, params).rowcount

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._c.executemany(sql, rows)

    def lock_ledger(self) -> None:
        pass


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def _exists(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


class SqliteBackend:
    shared = False

    def __init__(self, path: Path, write_batch_max: int = 64) -> None:
        self.path = path
        self._w, self._wlock = _connect(path), threading.Lock()
        self._r, self._rlock = _connect(path), threading.Lock()
        self._r.execute("PRAGMA query_only=ON")
        self._group: GroupCommit[_Tx] = GroupCommit(self.run_batch, write_batch_max)
        self._w_sync = "FULL"  # the writer connection's synchronous setting now
        self.durable_sync = "FULL"  # what a durable commit uses (benchmarks isolate fsync: NORMAL)

    def _tx(self, conn: sqlite3.Connection, begin: str, fn: Callable[[_Tx], T]) -> T:
        conn.execute(begin)
        try:
            out = fn(_Tx(conn))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    def _sync(self, durable: bool) -> None:
        sync = self.durable_sync if durable else "NORMAL"
        if sync != self._w_sync:
            self._w.execute(f"PRAGMA synchronous={sync}")
            self._w_sync = sync

    def write_now(self, fn: Callable[[_Tx], T]) -> T:
        with self._wlock:
            self._sync(durable=True)
            return self._tx(self._w, "BEGIN IMMEDIATE", fn)

    def read_now(self, fn: Callable[[_Tx], T]) -> T:
        with self._rlock:
            return self._tx(self._r, "BEGIN", fn)

    def run_batch(self, fns: list[Callable[[_Tx], Any]], durable: bool = True) -> list[Outcome]:
        """Writes in one IMMEDIATE transaction, each in its own savepoint (group commit). A batch
        that is not `durable` commits without fsync (WAL, synchronous=NORMAL): a power loss may
        drop it, and only together with every commit after it (the WAL is replayed as a prefix)."""
        with self._wlock:
            conn = self._w
            self._sync(durable)
            conn.execute("BEGIN IMMEDIATE")
            try:
                outs = [self._one(conn, fn) for fn in fns]
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return outs

    @staticmethod
    def _one(conn: sqlite3.Connection, fn: Callable[[_Tx], Any]) -> Outcome:
        conn.execute("SAVEPOINT w")
        try:
            out = Outcome(fn(_Tx(conn)))
        except Exception as exc:  # noqa: BLE001 - handed to this write's caller
            conn.execute("ROLLBACK TO w")
            out = Outcome(error=exc)
        conn.execute("RELEASE w")
        return out

    async def write(self, fn: Callable[[_Tx], T], durable: bool = True) -> T:
        return await self._group.submit(fn, durable)

    async def read(self, fn: Callable[[_Tx], T]) -> T:
        return await asyncio.to_thread(self.read_now, fn)

    def wal_checkpoint(self) -> None:
        """Copy the write-ahead log into the database and truncate it (after a bulk import)."""
        with self._wlock:
            self._w.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def close(self) -> None:
        await self._group.wait_idle()
        self.close_now()

    def close_now(self) -> None:
        with self._wlock, self._rlock:
            self._r.close()
            self._w.close()


def open_sqlite(
    path: Path | str,
    *,
    operator: bytes | None = None,
    create: bool = False,
    write_batch_max: int = 64,
) -> SqlStore:
    """Open the database at `path`. A new one is created only with create=True (and needs the
    operator key); a mistyped path is refused, never silently made into an empty ledger."""
    p = Path(path)
    if not _exists(p):
        if not create:
            raise NotFound(f"no ccgw database at {p} (create one with `ccgw init-db`)")
        if operator is None:
            raise NotFound("a new database needs the operator (log) public key")
        p.parent.mkdir(parents=True, exist_ok=True)
        backend = SqliteBackend(p, write_batch_max)
        backend.write_now(lambda tx: schema.initialise(tx, schema.SQLITE, operator))
    else:
        backend = SqliteBackend(p, write_batch_max)
    try:
        owner = backend.read_now(lambda tx: schema.operator_of(tx, operator, str(p)))
    except BaseException:
        backend.close_now()
        raise
    return SqlStore(backend, owner)
