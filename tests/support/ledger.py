"""Ledger test helpers: an operator key, stores opened on both backends, and receipts for jobs
(signed by a test worker key; the store trusts the gateway to have verified them)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.store.factory import open_store
from ccgw.gateway.store.sqlstore import SqlStore
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.receipts import Receipt, sign_receipt
from tests.support import pg

OPERATOR = Ed25519PrivateKey.generate()
OPERATOR_PUB = OPERATOR.public_key().public_bytes_raw()
WORKER = Ed25519PrivateKey.generate()
EVIDENCE = "ab" * 32


def job(i: int) -> bytes:
    return i.to_bytes(16, "big")


def receipt(
    i: int,
    *,
    client: str = "client:c",
    provider: str = "provider:p",
    model: str = "m",
    tokens: tuple[int, int] = (100, 50),
    evidence: str = EVIDENCE,
    key: Ed25519PrivateKey = WORKER,
    kid: str = "k",
    model_digest: str = "00" * 32,
) -> str:
    r = Receipt(
        v=1,
        job_id=job(i).hex(),
        worker_id="w",
        key_id=kid,
        account=client,
        provider=provider,
        model=model,
        model_digest=model_digest,
        request_sha256="00" * 32,
        answer_sha256="00" * 32,
        answer_chunks=1,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        started_at_ms=1,
        finished_at_ms=2,
        evidence_sha256=evidence,
        finish_reason="stop",
    )
    return sign_receipt(r, key, kid)


def open_test_store(kind: str, tmp_path: Path) -> tuple[SqlStore, str | None]:
    """(a new store, its PostgreSQL schema or None)."""
    if kind == "sqlite":
        return open_store(tmp_path / "s.db", operator=OPERATOR_PUB, create=True), None
    schema = pg.fresh_schema()
    return open_store(pg.DSN, schema=schema, operator=OPERATOR_PUB, create=True), schema


class SimWorker:
    """A worker identity on the simulated TEE whose receipts an auditor verifies for real."""

    def __init__(self, model: str = "m") -> None:
        import time

        from ccgw.enclave.evidence_bundle import collect_bundle
        from ccgw.enclave.keys import Keyring
        from ccgw.simtee import SimulatedSnpTee
        from ccgw.verify import binding
        from tests.support.cluster import vendor

        self.vendor = vendor()
        self.keys = Keyring()
        self.model, self.model_digest = model, bytes(range(32))
        self.bundle = collect_bundle(
            cpu=SimulatedSnpTee(self.vendor),
            gpu=None,
            keys=self.keys.public,
            nonce=bytes(32),
            models={model: self.model_digest},
            issued_at_ms=int(time.time() * 1000),
        )
        self.digest = binding.evidence_sha256(self.bundle)

    def receipt(self, i: int, client: str, provider: str, tokens: tuple[int, int]) -> str:
        r = Receipt(
            v=1,
            job_id=job(i).hex(),
            worker_id="w-sim",
            key_id=self.keys.key_id,
            account=client,
            provider=provider,
            model=self.model,
            model_digest=self.model_digest.hex(),
            request_sha256="00" * 32,
            answer_sha256="00" * 32,
            answer_chunks=1,
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            started_at_ms=1,
            finished_at_ms=2,
            evidence_sha256=self.digest,
            finish_reason="stop",
        )
        return self.keys.sign(r)

    def auditor_trust(self) -> tuple[Policy, RootStore]:
        return Policy().allowing_simulated(), RootStore.default().with_simulated(
            self.vendor.root_pem()
        )


@contextlib.asynccontextmanager
async def log_server(store: SqlStore, every: int = 1_000_000) -> AsyncIterator[tuple[str, Any]]:
    """The store's public log on 127.0.0.1:0, signed with OPERATOR: (address, checkpointer)."""
    import grpc

    from ccgw.gateway.checkpointer import Checkpointer
    from ccgw.gateway.config import GatewayConfig, GatewayLimits
    from ccgw.gateway.log_service import LogServicer
    from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc

    config = GatewayConfig(limits=GatewayLimits(checkpoint_every_entries=every))
    cp = Checkpointer(config, store, OPERATOR)
    server = grpc.aio.server()
    lgrpc.add_TransparencyLogServicer_to_server(LogServicer(config, store, cp), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", cp
    finally:
        await server.stop(0)


class Raw:
    """The operator's own hands on the database, beside the gateway: SQL with `?` placeholders on
    the SQLite file, or on the PostgreSQL schema when one is given."""

    def __init__(self, sqlite_path: Path, schema: str | None = None) -> None:
        if schema is None:
            self._c: Any = sqlite3.connect(sqlite_path, isolation_level=None)
            self._pg = False
        else:
            import psycopg

            self._c = psycopg.connect(pg.DSN, autocommit=True)
            self._c.execute(f'SET search_path TO "{schema}"')
            self._pg = True

    def q(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self._c.execute(sql.replace("?", "%s") if self._pg else sql, params)
        if not cur.description:
            return []
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cur.fetchall()]

    def dump(self, table: str) -> list[tuple[Any, ...]]:
        return sorted(self.q(f"SELECT * FROM {table}"), key=repr)

    def close(self) -> None:
        self._c.close()
