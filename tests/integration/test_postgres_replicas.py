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
    from gateway.store.postgres import PostgresStore

    schema = pg.fresh_schema()
    s = PostgresStore(pg.DSN, schema=schema)
    try:
        await s.deposit("client:c", 1_000_000, "d1")
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.support.pg_recorder", pg.DSN, schema, str(a), str(b)],
                cwd=ROOT,
            )
            for a, b in ((0, 80), (40, JOBS))  # jobs 40..79 are raced by both replicas
        ]
        for p in procs:
            assert p.wait(timeout=120) == 0
        assert await s.log_size() == JOBS
        entries = await s.entries(0, JOBS + 10)
        assert [e.index for e in entries] == list(range(JOBS))
        assert len({e.receipt_jws for e in entries}) == JOBS  # every job logged once
        assert await s.balance("client:c") == (1_000_000 - 100 * JOBS, 0)
        assert await s.balance("provider:p") == (95 * JOBS, 0)
        assert await s.balance("network:fee") == (5 * JOBS, 0)
        ledger = await s.ledger(0, 10_000)
        assert sum(1 for e in ledger if e.account == "provider:p") == JOBS  # credited once each
    finally:
        await s.close()
        pg.drop_schema(schema)
