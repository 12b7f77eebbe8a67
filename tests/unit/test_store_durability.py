"""Holds and their releases commit without waiting for the disk; everything that touches money or the
log commits durably (ADR 11). These tests pin which writes wait for the disk, and show, for every
state a power loss can leave behind, that a restart loses and doubles nothing.

A power loss with SQLite in WAL mode keeps a prefix of the committed transactions (recovery replays
the write-ahead log up to the last valid commit frame), and a durable commit syncs every frame
before it. So the possible states after a crash are exactly the WAL cut after each commit frame;
`_wal_prefixes` builds every one of them and the test restarts a gateway's store on each.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ccgw.gateway.store.factory import open_store
from ccgw.gateway.store.sqlstore import SqlStore
from ccgw.verify import log_entries as le
from ccgw.verify.prices import DEFAULT_SCHEDULE
from tests.support import pg
from tests.support.ledger import EVIDENCE, OPERATOR, OPERATOR_PUB, job, open_test_store, receipt

DEPOSIT = 10_000


def _waits_for_disk(tx: Any) -> bool:
    """Inside a write: will this transaction's commit wait for the disk?"""
    try:
        return str(tx.one("SHOW synchronous_commit")[0]) == "on"  # PostgreSQL
    except Exception:  # noqa: BLE001 - not PostgreSQL's syntax: SQLite
        return int(tx.one("PRAGMA synchronous")[0]) == 2  # FULL (NORMAL = 1: no fsync in WAL)


async def _new_store(path: Path) -> SqlStore:
    s = open_store(path, operator=OPERATOR_PUB, create=True)
    await s.ensure_schedule(lambda i: le.price_schedule(OPERATOR, DEFAULT_SCHEDULE))
    await s.append(le.deposit(OPERATOR, "client:c", DEPOSIT, "d1"))
    return s


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    s, schema = open_test_store(request.param, tmp_path)
    await s.ensure_schedule(lambda i: le.price_schedule(OPERATOR, DEFAULT_SCHEDULE))
    await s.append(le.deposit(OPERATOR, "client:c", DEPOSIT, "d1"))
    yield s
    await s.close()
    if schema:
        pg.drop_schema(schema)


async def test_only_batches_of_reservations_skip_the_wait_for_the_disk(
    any_store: SqlStore,
) -> None:
    s = any_store
    b: Any = s.backend
    assert await b.write(_waits_for_disk, durable=False) is False
    assert await b.write(_waits_for_disk) is True
    # Queued together, they share one transaction: one durable write makes it durable.
    together = await asyncio.gather(
        b.write(_waits_for_disk, durable=False),
        b.write(_waits_for_disk),
        b.write(_waits_for_disk, False),
    )
    assert together == [True] * 3
    # A hold and a void are reservations: alone in their batch, no wait ...
    levels: list[bool] = []
    run_batch = b.run_batch

    def spy(fns: list[Any], durable: bool = True) -> Any:
        levels.append(durable)
        return run_batch(fns, durable)

    b._group._run_batch = spy
    await s.hold(job(0), "client:c", 500)
    await s.void(job(0))
    assert levels == [False, False]
    # ... and a settle, an append and the start-up release always wait for the disk.
    levels.clear()
    await s.hold(job(1), "client:c", 500)
    await s.settle(job(1), receipt_jws=receipt(1), evidence_sha256=EVIDENCE)
    await s.append(le.deposit(OPERATOR, "client:c", 1, "d2"))
    await s.release_orphaned_holds()
    assert levels == [False, True, True, True]
    levels.clear()  # a hold queued with a settle is committed durably with it
    await s.hold(job(2), "client:c", 500)
    await asyncio.gather(
        s.hold(job(3), "client:c", 500),
        s.settle(job(2), receipt_jws=receipt(2), evidence_sha256=EVIDENCE),
    )
    assert levels == [False, True]
    # A durable write after a reservation batch waits for the disk again.
    await s.void(job(3))
    assert await b.write(_waits_for_disk) is True


def _wal_commits(wal: bytes) -> list[int]:
    """Byte offsets just after each commit frame of a SQLite write-ahead log."""
    magic, _version, page_size = struct.unpack(">III", wal[:12])
    assert magic in (0x377F0682, 0x377F0683)
    salts = wal[16:24]
    frame = 24 + page_size
    ends = []
    for off in range(32, len(wal) - frame + 1, frame):
        assert wal[off + 8 : off + 16] == salts  # one WAL generation (no restart in between)
        if struct.unpack(">I", wal[off + 4 : off + 8])[0]:  # database size: a commit frame
            ends.append(off + frame)
    return ends


def _wal_prefixes(db: Path, out: Path) -> list[Path]:
    """A copy of `db` for every state a power loss can leave: the WAL cut after each commit."""
    wal = (db.parent / (db.name + "-wal")).read_bytes()
    states = []
    for i, end in enumerate(_wal_commits(wal)):
        d = out / f"crash{i}"
        d.mkdir()
        shutil.copyfile(db, d / db.name)
        (d / (db.name + "-wal")).write_bytes(wal[:end])
        states.append(d / db.name)
    return states


async def test_a_crash_at_any_commit_loses_no_settled_reward_and_leaves_no_hold(
    tmp_path: Path,
) -> None:
    db = tmp_path / "live" / "s.db"
    s = await _new_store(db)
    await s.close()  # the deposit is checkpointed into the database file; the WAL starts empty
    s = open_store(db)
    # The jobs of a busy gateway: reservations (no fsync) interleaved with settles (fsync).
    # After each commit: (what it was, rewards settled, holds pending).
    steps: list[tuple[str, int, int]] = []
    await s.hold(job(0), "client:c", 400)
    steps.append(("hold 0", 0, 1))
    await s.hold(job(1), "client:c", 400)
    steps.append(("hold 1", 0, 2))
    await s.settle(job(0), receipt_jws=receipt(0), evidence_sha256=EVIDENCE)
    steps.append(("settle 0", 1, 1))
    await s.void(job(1))
    steps.append(("void 1", 1, 0))
    await s.hold(job(2), "client:c", 400)
    steps.append(("hold 2", 1, 1))
    await s.hold(job(1), "client:c", 400)  # a voided job retried
    steps.append(("hold 1 again", 1, 2))
    await s.settle(job(1), receipt_jws=receipt(1), evidence_sha256=EVIDENCE)
    steps.append(("settle 1", 2, 1))
    await s.hold(job(3), "client:c", 400)
    steps.append(("hold 3", 2, 2))
    states = _wal_prefixes(db, tmp_path)
    await s.close()
    assert len(states) == len(steps)
    cost = 200  # receipt(): 100 input + 50 output tokens at the default prices
    for state, (what, settled, pending) in zip(states, steps, strict=True):
        restarted = open_store(state)
        try:
            released = await restarted.release_orphaned_holds()
            assert released == pending, what
            # No reservation survives a restart, and the money is the log's: every settled
            # reward once, nothing else moved.
            assert await restarted.balance("client:c") == (DEPOSIT - settled * cost, 0), what
            assert (await restarted.balance("provider:p"))[0] + (
                await restarted.balance("network:fee")
            )[0] == settled * cost, what
            assert await restarted.log_size() == 2 + settled, what
            for i in range(settled):
                again = await restarted.settle(
                    job(i), receipt_jws=receipt(i), evidence_sha256=EVIDENCE
                )
                assert again.already_settled, what  # never paid twice
            # The view is what the log gives.
            before = await restarted.accounts("", 100)
            await restarted.rebuild_view()
            assert await restarted.accounts("", 100) == before, what
        finally:
            await restarted.close()


@pytest.mark.parametrize("durable", [True, False])
async def test_a_refused_reservation_still_commits_its_batch(tmp_path: Path, durable: bool) -> None:
    """Savepoints inside a non-durable batch behave as in a durable one."""
    s = await _new_store(tmp_path / "s.db")
    try:
        results = await asyncio.gather(
            s.hold(job(0), "client:c", 400),
            s.hold(job(1), "client:c", DEPOSIT),  # more than is available: refused alone
            s.hold(job(2), "client:c", 400),
            *([s.append(le.deposit(OPERATOR, "client:c", 1, "d2"))] if durable else []),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert type(results[1]).__name__ == "InsufficientFunds"
        assert await s.balance("client:c") == (DEPOSIT + (1 if durable else 0) - 800, 800)
    finally:
        await s.close()


async def test_each_write_of_a_batch_fails_alone(any_store: SqlStore) -> None:
    """PostgreSQL runs a batch without savepoints while every refusal comes before any write;
    a write that fails after writing, or a statement the database refuses, sends the batch back
    with one savepoint per write. Either way only the failed write is undone."""
    s, b = any_store, any_store.backend

    def wrote_then_failed(tx: Any) -> None:
        tx.run("INSERT INTO checkpoints (size, text) VALUES (?, ?)", (7, "half-done"))
        raise ValueError("refused after writing")

    def returned_then_failed(tx: Any) -> None:  # a write through one(): still a write
        tx.one("INSERT INTO checkpoints (size, text) VALUES (?, ?) RETURNING size", (9, "half"))
        raise ValueError("refused after writing")

    def database_refuses(tx: Any) -> None:
        tx.run("INSERT INTO checkpoints (size, text) VALUES (?, ?)", (8, None))  # NOT NULL

    failures = (None, wrote_then_failed, returned_then_failed, database_refuses)
    for n, failing in enumerate(failures):
        base = 10 * n
        extra = [] if failing is None else [b.write(failing)]
        results = await asyncio.gather(
            s.hold(job(base), "client:c", 100),
            s.hold(job(base + 1), "client:c", DEPOSIT),  # refused before writing anything
            *extra,
            s.settle(job(base), receipt_jws=receipt(base), evidence_sha256=EVIDENCE),
            s.hold(job(base + 2), "client:c", 100),
            return_exceptions=True,
        )
        assert results[0] is None and results[-1] is None, failing
        assert type(results[1]).__name__ == "InsufficientFunds"
        if failing is not None:
            assert isinstance(results[2], Exception), failing
        assert not isinstance(results[-2], BaseException), failing
        assert not results[-2].already_settled
    for size in (7, 8, 9):
        assert await s.checkpoint(size) is None
    assert await s.balance("client:c") == (DEPOSIT - 4 * 200 - 400, 400)  # 4 settled, 4 held
    assert await s.log_size() == 2 + 4
