"""A gateway replica's recording path, as a separate process: hold + settle jobs [start, end) on a
shared PostgreSQL schema (python -m tests.support.pg_recorder DSN SCHEMA START END)."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from ccgw.gateway.errors import Conflict
from ccgw.gateway.store.factory import open_store
from tests.support.ledger import EVIDENCE, job, receipt


async def main(dsn: str, schema: str, start: int, end: int) -> None:
    s = open_store(dsn, schema=schema)
    for i in range(start, end):
        with contextlib.suppress(Conflict):  # the other replica holds or settled it
            await s.hold(job(i), "client:c", 200)
        with contextlib.suppress(Conflict):  # settled, or being settled, by the other replica
            await s.settle(job(i), receipt_jws=receipt(i), evidence_sha256=EVIDENCE)
    await s.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
