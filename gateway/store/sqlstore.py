"""The Store, once, over any SQL backend: each call is one transaction (writes: one savepoint of a
group-committed transaction) running the functions of gateway.store.rules, tree and reads. A
backend (sqlite.py, postgres.py) supplies connections, transactions, locking and its dialect;
nothing about the ledger lives there."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from ccgw.gateway.store import reads, rules, tree
from ccgw.gateway.store.base import AccountRow, AppendResult, LedgerEntry, LogEntry, SettleResult
from ccgw.gateway.store.rules import Context, Tx
from ccgw.verify import merkle
from ccgw.verify.log_entries import Entry
from ccgw.verify.prices import DEFAULT_SCHEDULE, PriceSchedule

T = TypeVar("T")


class Backend(Protocol):
    shared: bool  # other processes may hold (and own the pending holds of) the same database

    async def write(self, fn: Callable[[Tx], T], durable: bool = True) -> T:
        """Group-committed; `durable=False` (reservations only) may commit without waiting for
        the disk when no durable write shares its batch."""
        ...

    async def read(self, fn: Callable[[Tx], T]) -> T: ...

    def read_now(self, fn: Callable[[Tx], T]) -> T:
        """A read transaction on the calling thread (start-up only)."""
        ...

    async def close(self) -> None: ...


class SqlStore:
    def __init__(self, backend: Backend, operator: bytes, stale_hold_s: float = 600.0) -> None:
        self._b = backend
        self._ctx = Context(operator)
        self._stale_hold_ms = int(stale_hold_s * 1000)
        backend.read_now(lambda tx: reads.latest_schedule(tx, self._ctx))

    @property
    def backend(self) -> Backend:
        return self._b

    @property
    def operator_key(self) -> bytes:
        return self._ctx.operator

    # -- reservations -------------------------------------------------------------------------

    async def hold(self, job_id: bytes, account: str, amount_micro: int) -> None:
        # A reservation moves no money and is not logged: it need not wait for the disk (ADR 11).
        await self._b.write(lambda tx: rules.hold(tx, job_id, account, amount_micro), False)

    async def void(self, job_id: bytes) -> None:
        await self._b.write(lambda tx: rules.void(tx, job_id), False)

    async def release_orphaned_holds(self) -> int:
        # Alone on its database, a gateway owns every pending hold at start-up; next to other
        # replicas it releases only holds older than the job deadline (they cannot be live).
        before = int(time.time() * 1000) - self._stale_hold_ms if self._b.shared else None
        return await self._b.write(lambda tx: rules.release_holds(tx, before))

    # -- appends --------------------------------------------------------------------------------

    async def settle(
        self, job_id: bytes, *, receipt_jws: str, evidence_sha256: str
    ) -> SettleResult:
        return await self._b.write(
            lambda tx: rules.settle(tx, self._ctx, job_id, receipt_jws, evidence_sha256)
        )

    async def append(self, entry: Entry) -> AppendResult:
        out = await self._b.write(lambda tx: rules.append(tx, self._ctx, entry))
        await self._refresh_schedule()
        return out

    async def import_entries(self, batch: Sequence[Entry]) -> int:
        """Admin: append entries logged elsewhere (see rules.import_entries)."""
        out = await self._b.write(lambda tx: rules.import_entries(tx, self._ctx, batch))
        await self._refresh_schedule()
        return out

    async def ensure_schedule(self, entry_at: Callable[[int], Entry]) -> bool:
        out = await self._b.write(lambda tx: rules.ensure_schedule(tx, self._ctx, entry_at))
        await self._refresh_schedule()
        return out

    async def _refresh_schedule(self) -> None:
        await self._b.read(lambda tx: reads.latest_schedule(tx, self._ctx))

    def current_schedule(self) -> PriceSchedule:
        return self._ctx.current or DEFAULT_SCHEDULE

    # -- reads ----------------------------------------------------------------------------------

    async def balance(self, account: str) -> tuple[int, int]:
        return await self._b.read(lambda tx: reads.balance(tx, account))

    async def receipt(self, job_id: bytes) -> tuple[str, int] | None:
        return await self._b.read(lambda tx: reads.receipt(tx, job_id))

    async def release_entries(self, after: int, limit: int) -> list[LogEntry]:
        return await self._b.read(lambda tx: reads.release_entries(tx, after, limit))

    async def log_size(self) -> int:
        return await self._b.read(lambda tx: tree.head(tx).size)

    async def log_head(self) -> tuple[int, bytes]:
        def fn(tx: Tx) -> tuple[int, bytes]:
            f = tree.head(tx)
            return f.size, f.root()

        return await self._b.read(fn)

    async def entries(self, start: int, end: int) -> list[LogEntry]:
        return await self._b.read(lambda tx: reads.entries(tx, start, end))

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        ranges = merkle.inclusion_ranges(index, size)
        return await self._b.read(lambda tx: tree.proof(tx, ranges))

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        ranges = merkle.consistency_ranges(first, second)
        return await self._b.read(lambda tx: tree.proof(tx, ranges))

    async def root(self, size: int) -> bytes:
        return await self._b.read(lambda tx: tree.root(tx, size))

    async def add_checkpoint(self, size: int, text: str) -> None:
        await self._b.write(
            lambda tx: tx.run(
                "INSERT INTO checkpoints (size, text) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (size, text),
            )
        )

    async def latest_checkpoint(self) -> tuple[int, str] | None:
        def fn(tx: Tx) -> tuple[int, str] | None:
            row = tx.one("SELECT size, text FROM checkpoints ORDER BY size DESC LIMIT 1")
            return None if row is None else (int(row[0]), str(row[1]))

        return await self._b.read(fn)

    async def checkpoint(self, size: int) -> str | None:
        def fn(tx: Tx) -> str | None:
            row = tx.one("SELECT text FROM checkpoints WHERE size = ?", (size,))
            return None if row is None else str(row[0])

        return await self._b.read(fn)

    async def add_evidence(self, digest: str, bundle: bytes) -> None:
        await self._b.write(
            lambda tx: tx.run(
                "INSERT INTO evidence (digest, bundle) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (digest, bundle),
            )
        )

    async def evidence(self, digest: str) -> bytes | None:
        def fn(tx: Tx) -> bytes | None:
            row = tx.one("SELECT bundle FROM evidence WHERE digest = ?", (digest,))
            return None if row is None else bytes(row[0])

        return await self._b.read(fn)

    async def ledger(self, after_seq: int, limit: int) -> list[LedgerEntry]:
        return await self._b.read(lambda tx: reads.ledger(tx, after_seq, limit))

    async def accounts(self, after: str, limit: int) -> tuple[int, list[AccountRow]]:
        return await self._b.read(lambda tx: reads.accounts(tx, after, limit))

    async def unique_keys(self, namespace: str) -> list[str]:
        def fn(tx: Tx) -> list[str]:
            rows = tx.all(
                "SELECT key FROM uniques WHERE namespace = ? ORDER BY log_index", (namespace,)
            )
            return [str(r[0]) for r in rows]

        return await self._b.read(fn)

    async def account_key_entries(self, account: str) -> list[int]:
        def fn(tx: Tx) -> list[int]:
            rows = tx.all(
                "SELECT log_index FROM account_keys WHERE account = ? ORDER BY log_index",
                (account,),
            )
            return [int(r[0]) for r in rows]

        return await self._b.read(fn)

    async def schedules(self) -> list[PriceSchedule]:
        return await self._b.read(lambda tx: reads.all_schedules(tx, self._ctx))

    async def rebuild_view(self) -> int:
        out = await self._b.write(lambda tx: rules.rebuild(tx, self._ctx))
        await self._refresh_schedule()
        return out

    async def close(self) -> None:
        await self._b.close()
