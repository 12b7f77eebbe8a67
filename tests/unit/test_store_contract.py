"""The Store contract, on SQLite and on the real PostgreSQL server: holds, idempotent settle,
signed appends, running balances, proofs from stored nodes, the view rebuilt from the log."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.errors import BadRequest, Conflict, InsufficientFunds, NotFound, PermissionDenied
from ccgw.gateway.store.factory import open_store
from ccgw.gateway.store.sqlstore import SqlStore
from ccgw.verify import log_entries as le
from ccgw.verify import merkle
from ccgw.verify.ledger_rules import EXTERNAL
from ccgw.verify.prices import DEFAULT_SCHEDULE, Price, PriceSchedule
from tests.support import pg
from tests.support.ledger import EVIDENCE, OPERATOR, OPERATOR_PUB, job, open_test_store, receipt


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    s, schema = open_test_store(request.param, tmp_path)
    assert await s.ensure_schedule(lambda i: le.price_schedule(OPERATOR, DEFAULT_SCHEDULE))
    assert not await s.ensure_schedule(lambda i: le.price_schedule(OPERATOR, DEFAULT_SCHEDULE))
    yield s
    await s.close()
    if schema:
        pg.drop_schema(schema)


async def settle(s: SqlStore, i: int, **kw: object) -> int:
    r = await s.settle(job(i), receipt_jws=receipt(i, **kw), evidence_sha256=EVIDENCE)  # type: ignore[arg-type]
    return r.log_index


async def test_holds_settle_once_and_move_money_by_the_rules(store: SqlStore) -> None:
    s = store
    assert (await s.append(le.deposit(OPERATOR, "client:c", 1_000, "d1"))).log_index == 1
    assert (await s.append(le.deposit(OPERATOR, "client:c", 1_000, "d1"))).already_logged
    assert await s.balance("client:c") == (1_000, 0)
    with pytest.raises(InsufficientFunds):
        await s.hold(job(0), "client:c", 5_000)
    await s.hold(job(0), "client:c", 300)
    assert await s.balance("client:c") == (700, 300)
    with pytest.raises(Conflict):
        await s.hold(job(0), "client:c", 300)  # in flight
    with pytest.raises(BadRequest):  # the receipt names another job
        await s.settle(job(1), receipt_jws=receipt(0), evidence_sha256=EVIDENCE)
    with pytest.raises(Conflict):  # no hold for this client
        await s.settle(job(0), receipt_jws=receipt(0, client="client:x"), evidence_sha256=EVIDENCE)
    first = await s.settle(job(0), receipt_jws=receipt(0), evidence_sha256=EVIDENCE)
    assert (first.log_index, first.cost_micro, first.fee_micro) == (2, 200, 10)  # 100 in + 50 out
    again = await s.settle(
        job(0), receipt_jws=receipt(0, provider="provider:x"), evidence_sha256=EVIDENCE
    )
    assert again.already_settled and again.log_index == 2
    assert await s.balance("client:c") == (800, 0)
    assert await s.balance("provider:p") == (190, 0)
    assert await s.balance("network:fee") == (10, 0)
    assert await s.balance("provider:x") == (0, 0)
    with pytest.raises(Conflict):
        await s.hold(job(0), "client:c", 10)  # settled jobs cannot be held again
    await s.hold(job(1), "client:c", 100)
    await s.void(job(1))
    await s.void(job(1))  # no-op
    assert await s.balance("client:c") == (800, 0)
    await s.hold(job(1), "client:c", 100)  # a voided job may be retried; the reward (200) may
    assert await settle(s, 1) == 3  # exceed its hold when the available balance covers it
    await s.hold(job(2), "client:c", 550)
    with pytest.raises(InsufficientFunds):  # a reward of 3000 > hold 550 + available 50
        await s.settle(
            job(2), receipt_jws=receipt(2, tokens=(1000, 1000)), evidence_sha256=EVIDENCE
        )
    assert await s.balance("client:c") == (50, 550)
    await s.void(job(2))


async def test_withdrawals_need_the_accounts_key_and_deposits_the_operators(
    store: SqlStore,
) -> None:
    s = store
    other = Ed25519PrivateKey.generate()
    with pytest.raises(PermissionDenied):
        await s.append(le.deposit(other, "client:c", 1_000, "forged"))
    await s.append(le.deposit(OPERATOR, "provider:p", 500, "d"))
    holder = Ed25519PrivateKey.generate()
    with pytest.raises(PermissionDenied):  # no key registered yet
        await s.append(le.withdrawal(holder, "provider:p", 50, "w1"))
    await s.append(le.account_key(holder, "provider:p"))
    with pytest.raises(Conflict):  # a second first key: only a change signed by the old one
        await s.append(le.account_key(other, "provider:p"))
    with pytest.raises(PermissionDenied):
        await s.append(le.withdrawal(other, "provider:p", 50, "w1"))
    await s.append(le.withdrawal(holder, "provider:p", 50, "w1"))
    assert (await s.append(le.withdrawal(holder, "provider:p", 50, "w1"))).already_logged
    with pytest.raises(InsufficientFunds):
        await s.append(le.withdrawal(holder, "provider:p", 10_000, "w2"))
    await s.append(le.account_key(other, "provider:p", previous=holder))  # rotation
    with pytest.raises(PermissionDenied):
        await s.append(le.withdrawal(holder, "provider:p", 5, "w3"))
    await s.append(le.withdrawal(other, "provider:p", 5, "w3"))
    assert await s.balance("provider:p") == (445, 0)
    assert await s.account_key_entries("provider:p") == [2, 4]
    with pytest.raises(BadRequest):  # receipts are logged by settle only
        await s.append(
            le.Entry(
                "receipt", le.canonical({"receipt_jws": receipt(0), "evidence_sha256": EVIDENCE})
            )
        )
    with pytest.raises(BadRequest):
        await s.append(le.Entry("bonus", b"{}"))


async def test_prices_are_logged_and_apply_from_their_index(store: SqlStore) -> None:
    s = store
    await s.append(le.deposit(OPERATOR, "client:c", 100_000, "d"))
    size = await s.log_size()
    dear = PriceSchedule(
        Price(1_000, 2_000), (("big", Price(10_000, 20_000)),), 1_000, "network:fee", size
    )
    with pytest.raises(BadRequest):  # retroactive
        await s.append(le.price_schedule(OPERATOR, dear.with_from_index(size - 1)))
    await s.append(le.price_schedule(OPERATOR, dear))
    assert s.current_schedule() == dear
    await s.hold(job(5), "client:c", 5_000)
    r = await s.settle(job(5), receipt_jws=receipt(5, model="big"), evidence_sha256=EVIDENCE)
    assert (r.cost_micro, r.fee_micro) == (2_000, 200)
    assert await s.schedules() == [DEFAULT_SCHEDULE, dear]


async def test_log_tree_view_and_rebuild(store: SqlStore) -> None:
    s = store
    await s.append(le.deposit(OPERATOR, "client:c", 10_000, "d"))
    for i in range(7):
        await s.hold(job(i), "client:c", 300)
        if i % 3:
            await settle(s, i)
        else:
            await s.void(job(i))
    await s.hold(job(99), "client:c", 300)  # pending across the rebuild
    size, head_root = await s.log_head()
    entries = await s.entries(0, 1_000)
    assert [e.index for e in entries] == list(range(size))
    leaves = [e.entry.leaf_hash() for e in entries]
    assert head_root == merkle.root(leaves)
    for n in range(1, size + 1):
        assert await s.root(n) == merkle.root(leaves[:n])
        for i in range(n):
            assert await s.inclusion_proof(i, n) == merkle.inclusion_proof(i, leaves[:n])
        for m in range(1, n + 1):
            assert await s.consistency_proof(m, n) == merkle.consistency_proof(m, leaves[:n])
    postings = await s.ledger(0, 1_000)
    assert sum(p.amount_micro for p in postings) == 0
    assert sum(p.amount_micro for p in postings if p.account != EXTERNAL) == 10_000
    assert await s.ledger(postings[2].seq, 2) == postings[3:5]
    log_size, accounts = await s.accounts("", 100)
    assert log_size == size and sum(a.balance_micro for a in accounts) == 0
    before = (postings, accounts, await s.balance("client:c"))
    assert await s.rebuild_view() == size
    after = (await s.ledger(0, 1_000), (await s.accounts("", 100))[1], await s.balance("client:c"))
    assert after == before and before[2][1] == 300
    assert await s.receipt(job(1)) == (receipt(1), 2)
    assert await s.receipt(job(0)) is None
    await s.add_checkpoint(size, "cp")
    assert await s.latest_checkpoint() == (size, "cp") and await s.checkpoint(size) == "cp"
    await s.add_evidence("ab", b"bundle")
    assert await s.evidence("ab") == b"bundle" and await s.evidence("zz") is None


async def test_orphaned_holds_are_released(store: SqlStore) -> None:
    await store.append(le.deposit(OPERATOR, "client:c", 1_000, "d1"))
    await store.hold(job(7), "client:c", 400)
    released = await store.release_orphaned_holds()
    if not store.backend.shared:
        assert released == 1 and await store.balance("client:c") == (1_000, 0)
    else:  # PostgreSQL only releases holds older than the job deadline (other replicas may own them)
        assert released == 0 and await store.balance("client:c") == (600, 400)


async def test_no_database_is_created_by_mistake(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        open_store(tmp_path / "typo.db", operator=OPERATOR_PUB)
    assert not (tmp_path / "typo.db").exists()
    s = open_store(tmp_path / "gw.db", operator=OPERATOR_PUB, create=True)
    await s.close()
    with pytest.raises(PermissionDenied):  # another log key's database
        open_store(
            tmp_path / "gw.db",
            operator=Ed25519PrivateKey.generate().public_key().public_bytes_raw(),
        )
    con = sqlite3.connect(tmp_path / "v1.db")
    con.execute("CREATE TABLE receipts (job_id BLOB)")
    con.commit()
    con.close()
    with pytest.raises(BadRequest, match="format"):
        open_store(tmp_path / "v1.db")


@pytest.mark.postgres
async def test_no_postgres_schema_is_created_by_mistake() -> None:
    schema = pg.fresh_schema()
    try:
        with pytest.raises(NotFound):
            open_store(pg.DSN, schema=schema, operator=OPERATOR_PUB)
    finally:
        pg.drop_schema(schema)


async def test_concurrent_writes_commit_together_and_fail_alone(store: SqlStore) -> None:
    """Group commit: writes that arrive together share a transaction; a refused one is rolled
    back alone (its savepoint), the others commit."""
    import asyncio

    await store.append(le.deposit(OPERATOR, "client:c", 1_000, "d"))
    holds = await asyncio.gather(
        *(store.hold(job(i), "client:c", 100) for i in range(20)), return_exceptions=True
    )
    held = [i for i, r in enumerate(holds) if r is None]
    assert len(held) == 10 and all(isinstance(r, InsufficientFunds) for r in holds if r is not None)
    assert await store.balance("client:c") == (0, 1_000)
    results = await asyncio.gather(
        *(settle(store, i, tokens=(100, 0)) for i in [*held, 99]), return_exceptions=True
    )
    assert isinstance(results[-1], Conflict)  # job 99 was never held
    assert sorted(results[:-1]) == list(range(2, 12))  # type: ignore[type-var]
    assert await store.balance("client:c") == (0, 0)  # ten jobs of 100
    size, root = await store.log_head()
    assert size == 12 and root == merkle.root(
        [e.entry.leaf_hash() for e in await store.entries(0, 99)]
    )


async def test_release_entries_are_listed_in_order_from_an_index_and_survive_a_rebuild(
    store: SqlStore,
) -> None:
    from tests.unit.release.helpers import manifest, revocation, signed

    s = store
    docs = [signed(manifest(version=f"1.{i}.0")) for i in range(3)]
    logged = []
    for i, d in enumerate(docs):
        await s.append(le.deposit(OPERATOR, "client:c", 10, f"d{i}"))  # interleaved other kinds
        logged.append((await s.append(le.release_entry(d))).log_index)
    logged.append((await s.append(le.release_entry(revocation(docs[0])))).log_index)
    with pytest.raises(Conflict):  # one release digest is logged once (by any signature)
        await s.append(le.release_entry(signed(docs[1].manifest, Ed25519PrivateKey.generate())))
    rows = await s.release_entries(0, 10)
    assert [r.index for r in rows] == logged
    assert [r.kind for r in rows] == ["release"] * 3 + ["revocation"]
    assert [r.index for r in await s.release_entries(logged[1], 2)] == logged[1:3]
    assert await s.release_entries(logged[-1] + 1, 10) == []
    await s.rebuild_view()  # the index is part of the view: rebuilt from the log alone
    assert [r.index for r in await s.release_entries(0, 10)] == logged
    assert await s.balance("client:c") == (30, 0)  # releases moved no money
