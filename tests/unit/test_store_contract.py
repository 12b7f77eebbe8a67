"""The Store contract, on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ccgw.gateway.errors import Conflict, InsufficientFunds
from ccgw.gateway.store.base import Store
from ccgw.gateway.store.sqlite import EXTERNAL, SqliteStore
from ccgw.verify import merkle
from tests.support import pg


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s: Store = SqliteStore(tmp_path / "s.db")
        yield s
        await s.close()
    else:
        from ccgw.gateway.store.postgres import PostgresStore

        schema = pg.fresh_schema()
        s = PostgresStore(pg.DSN, schema=schema)
        yield s
        await s.close()
        pg.drop_schema(schema)


def job(i: int) -> bytes:
    return i.to_bytes(16, "big")


async def settle(s: Store, i: int, cost: int = 100, fee: int = 5) -> int:
    r = await s.settle(
        job(i),
        receipt_jws=f"jws-{i}",
        provider_account="provider:p",
        client_account="client:c",
        cost_micro=cost,
        fee_micro=fee,
        evidence_sha256="ab",
    )
    return r.log_index


async def test_contract(store: Store) -> None:
    s = store
    await s.deposit("client:c", 1_000, "d1")
    await s.deposit("client:c", 1_000, "d1")  # idempotent on the transfer id
    assert await s.balance("client:c") == (1_000, 0)
    with pytest.raises(InsufficientFunds):
        await s.hold(job(0), "client:c", 5_000)
    await s.hold(job(0), "client:c", 300)
    assert await s.balance("client:c") == (700, 300)
    with pytest.raises(Conflict):
        await s.hold(job(0), "client:c", 300)  # in flight
    with pytest.raises(Conflict):
        await s.settle(
            job(0),
            receipt_jws="x",
            provider_account="provider:p",
            client_account="client:c",
            cost_micro=301,
            fee_micro=0,
            evidence_sha256="ab",
        )  # more than held
    assert await settle(s, 0) == 0
    again = await s.settle(
        job(0),
        receipt_jws="other",
        provider_account="provider:x",
        client_account="client:c",
        cost_micro=200,
        fee_micro=0,
        evidence_sha256="cd",
    )
    assert again.already_settled and again.log_index == 0
    assert await s.balance("client:c") == (900, 0)
    assert await s.balance("provider:p") == (95, 0)
    assert await s.balance("network:fee") == (5, 0)
    with pytest.raises(Conflict):
        await s.hold(job(0), "client:c", 10)  # settled jobs cannot be held again
    await s.hold(job(1), "client:c", 100)
    await s.void(job(1))
    assert await s.balance("client:c") == (900, 0)
    await s.hold(job(1), "client:c", 100)  # a voided job may be retried
    assert await settle(s, 1) == 1
    await s.withdraw("provider:p", 50, "w1")
    with pytest.raises(InsufficientFunds):
        await s.withdraw("provider:p", 10_000, "w2")
    assert await s.log_size() == 2
    leaves = await s.leaf_hashes(2)
    assert leaves == [merkle.leaf_hash(merkle.receipt_leaf(f"jws-{i}", "ab")) for i in range(2)]
    entries = await s.ledger(0, 1_000)
    by_transfer: dict[str, int] = {}
    for e in entries:
        by_transfer[e.transfer_id] = by_transfer.get(e.transfer_id, 0) + e.amount_micro
    assert set(by_transfer.values()) == {0}
    inside = sum(e.amount_micro for e in entries if e.account != EXTERNAL)
    assert inside == 1_000 - 50  # deposits minus withdrawals
    await s.add_checkpoint(2, "cp")
    assert await s.latest_checkpoint() == (2, "cp")
    await s.add_evidence("ab", b"bundle")
    assert await s.evidence("ab") == b"bundle" and await s.evidence("zz") is None


async def test_orphaned_holds_are_released(store: Store, tmp_path: Path) -> None:
    await store.deposit("client:c", 1_000, "d1")
    await store.hold(job(7), "client:c", 400)
    released = await store.release_orphaned_holds()
    if isinstance(store, SqliteStore):
        assert released == 1 and await store.balance("client:c") == (1_000, 0)
    else:  # PostgreSQL only releases holds older than the job deadline (other replicas may own them)
        assert released == 0 and await store.balance("client:c") == (600, 400)
