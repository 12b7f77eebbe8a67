"""A gateway replica's recording path, as a separate process: hold + settle jobs [start, end) on a
shared PostgreSQL schema (python -m tests.support.pg_recorder DSN SCHEMA START END)."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from ccgw.gateway.errors import Conflict
from ccgw.gateway.store.postgres import PostgresStore


async def main(dsn: str, schema: str, start: int, end: int) -> None:
    s = PostgresStore(dsn, schema=schema)
    for i in range(start, end):
        job = i.to_bytes(16, "big")
        with contextlib.suppress(Conflict):  # the other replica holds or settled it
            await s.hold(job, "client:c", 100)
        with contextlib.suppress(Conflict):  # settled, or being settled, by the other replica
            await s.settle(
                job,
                receipt_jws=f"jws-{i}",
                provider_account="provider:p",
                client_account="client:c",
                cost_micro=100,
                fee_micro=5,
                evidence_sha256="ab",
            )
    await s.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
