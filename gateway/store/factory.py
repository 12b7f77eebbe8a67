"""The one way to open a gateway database: `--db` is an SQLite path or a postgresql:// DSN.
Nothing is created unless asked (create=True: `ccgw init-db` or `ccgw gateway --init-db`)."""

from __future__ import annotations

from pathlib import Path

from ccgw.gateway.store.sqlstore import SqlStore

PG_PREFIXES = ("postgresql://", "postgres://")


def is_postgres(db: str) -> bool:
    return db.startswith(PG_PREFIXES)


def open_store(
    db: str | Path,
    *,
    schema: str = "ccgw",
    operator: bytes | None = None,
    create: bool = False,
    pool_connections_max: int = 8,
    stale_hold_s: float = 600.0,
    write_batch_max: int = 64,
) -> SqlStore:
    """`operator`: the log key's raw public key; a database created for another key is refused."""
    if isinstance(db, str) and is_postgres(db):
        from ccgw.gateway.store.postgres import open_postgres  # the `postgres` extra

        return open_postgres(
            db,
            schema_name=schema,
            operator=operator,
            create=create,
            pool_connections_max=pool_connections_max,
            stale_hold_s=stale_hold_s,
            write_batch_max=write_batch_max,
        )
    from ccgw.gateway.store.sqlite import open_sqlite

    return open_sqlite(Path(db), operator=operator, create=create, write_batch_max=write_batch_max)
