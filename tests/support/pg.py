"""PostgreSQL for tests: the server named by CCGW_TEST_POSTGRES_DSN (default: the local trust-auth
server), a fresh schema per test; skip with a reason when no server answers."""

from __future__ import annotations

import os
import uuid

import pytest

DSN = os.environ.get("CCGW_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def fresh_schema() -> str:
    try:
        import psycopg

        with psycopg.connect(DSN, connect_timeout=3):
            pass
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server means skip
        pytest.skip(f"PostgreSQL not reachable at {DSN}: {exc.__class__.__name__}")
    return "t_" + uuid.uuid4().hex[:12]


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(DSN, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
