"""Two gateway replicas (processes) on one PostgreSQL database: overlapping concurrent jobs, each
credited exactly once, the log order total (indexes 0..n-1, no gaps, no duplicates), totals kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import pg

ROOT = Path(__file__).resolve().parents[2]
JOBS = 120


@pytest.mark.postgres
async def test_two_replicas_one_database() -> None:
    from ccgw.gateway.store.factory import open_store
    from ccgw.verify import log_entries as le
    from ccgw.verify.prices import DEFAULT_SCHEDULE
    from tests.support.ledger import OPERATOR, OPERATOR_PUB

    schema = pg.fresh_schema()
    s = open_store(pg.DSN, schema=schema, operator=OPERATOR_PUB, create=True)
    try:
        await s.ensure_schedule(lambda i: le.price_schedule(OPERATOR, DEFAULT_SCHEDULE))
        await s.append(le.deposit(OPERATOR, "client:c", 1_000_000, "d1"))
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.support.pg_recorder", pg.DSN, schema, str(a), str(b)],
                cwd=ROOT,
            )
            for a, b in ((0, 80), (40, JOBS))  # jobs 40..79 are raced by both replicas
        ]
        for p in procs:
            assert p.wait(timeout=120) == 0
        assert await s.log_size() == JOBS + 2
        entries = await s.entries(0, JOBS + 10)
        assert [e.index for e in entries] == list(range(JOBS + 2))
        assert len({e.body for e in entries[2:]}) == JOBS  # every job logged once
        assert await s.balance("client:c") == (1_000_000 - 200 * JOBS, 0)
        assert await s.balance("provider:p") == (190 * JOBS, 0)
        assert await s.balance("network:fee") == (10 * JOBS, 0)
        ledger = await s.ledger(0, 10_000)
        assert sum(1 for e in ledger if e.account == "provider:p") == JOBS  # credited once each
    finally:
        await s.close()
        pg.drop_schema(schema)


@pytest.mark.postgres
@pytest.mark.slow
async def test_two_gateway_processes_share_one_database(tmp_path: Path) -> None:
    """Two `ccgw gateway` processes on one PostgreSQL schema, a worker on each, clients on both."""
    import asyncio

    import grpc
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from ccgw.client.audit import Auditor, LogIdentity
    from ccgw.client.sdk import Client
    from ccgw.gateway.store.factory import open_store
    from ccgw.keys import load_private
    from ccgw.verify import log_entries as le
    from ccgw.verify.attestation.policy import Policy
    from ccgw.verify.attestation.roots import RootStore
    from tests.integration.test_crash import hammer
    from tests.support.processes import (
        free_port,
        operator_files,
        release_trust,
        start_gateway,
        start_worker,
        stop,
    )

    t = tmp_path
    schema = pg.fresh_schema()
    token = operator_files(t)
    log_key = load_private(t / "log.key")
    pub_raw = log_key.public_key().public_bytes_raw()
    store = open_store(pg.DSN, schema=schema, operator=pub_raw, create=True)
    await store.append(le.deposit(log_key, "client:app", 100_000_000, "dep-1"))
    procs: list[subprocess.Popen[bytes]] = []
    addrs = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    try:
        procs += [start_gateway(t, a, "--db", pg.DSN, "--db-schema", schema) for a in addrs]
        procs += [start_worker(t, a) for a in addrs]
        roots = RootStore.default().with_simulated((t / "sim" / "root.pem").read_bytes())
        policy = Policy().allowing_simulated()
        clients = [
            Client.connect(a, token, policy, roots, releases=release_trust(t)) for a in addrs
        ]
        for c in clients:
            for _ in range(150):
                try:
                    if await c.workers("tiny"):
                        break
                except Exception:  # noqa: BLE001 - gateway or worker still starting
                    pass
                await asyncio.sleep(0.2)
        answered: set[str] = set()
        await asyncio.gather(*(hammer(c, 3.0, answered) for c in clients))
        assert len(answered) >= 10
        size = await store.log_size()
        entries = await store.entries(0, size + 10)
        assert [e.index for e in entries] == list(range(size))  # one total order across replicas
        assert sum(e.kind == "receipt" for e in entries) == len(answered)  # each job logged once
        pub = load_pem_public_key((t / "log.pub").read_bytes())
        assert isinstance(pub, Ed25519PublicKey)
        async with grpc.aio.insecure_channel(addrs[1]) as ch:
            rep = await Auditor(
                ch,
                LogIdentity("ccgw-log", pub.public_bytes_raw(), "ccgw.local/log"),
                policy,
                roots,
                release_keys=release_trust(t).keys,
            ).run()
        assert rep.ok, rep.problems
        assert sum(v for k, v in rep.balances.items() if k != "external") == 100_000_000
        assert rep.balances["provider:acme"] > 0
    finally:
        stop(*reversed(procs))
        await store.close()
        pg.drop_schema(schema)
