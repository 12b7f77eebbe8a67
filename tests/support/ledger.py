"""Ledger test helpers: an operator key, stores opened on both backends, and receipts for jobs
(signed by a test worker key; the store trusts the gateway to have verified them)."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.errors import GatewayError
from ccgw.gateway.store.factory import open_store
from ccgw.gateway.store.sqlstore import SqlStore
from ccgw.verify import log_entries as le
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.prices import DEFAULT_SCHEDULE, Price, PriceSchedule
from ccgw.verify.receipts import RECEIPT_VERSION, Receipt, sign_receipt
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
        v=RECEIPT_VERSION,
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
            v=RECEIPT_VERSION,
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
        """These logs hold receipts of a fake worker under no release: the audits here are about
        the ledger, so they accept unreleased software by name."""
        policy = dataclasses.replace(Policy().allowing_simulated(), accept_unreleased=True)
        return policy, RootStore.default().with_simulated(self.vendor.root_pem())


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
        return [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cur.fetchall()
        ]

    def dump(self, table: str) -> list[tuple[Any, ...]]:
        return sorted(self.q(f"SELECT * FROM {table}"), key=repr)

    def close(self) -> None:
        self._c.close()


CLIENTS = ("client:a", "client:b")
PROVIDERS = ("provider:x", "provider:y")
ACCOUNTS = CLIENTS + PROVIDERS
HOLDERS = {a: Ed25519PrivateKey.generate() for a in ACCOUNTS}
_WORKER: list[SimWorker] = []


def worker() -> SimWorker:
    if not _WORKER:
        _WORKER.append(SimWorker())
    return _WORKER[0]


async def run_history(s: SqlStore, history: list[tuple[Any, ...]], cp: Any = None) -> None:
    """Seed the log (schedule, evidence, a deposit), then run each op through the store; an op the
    rules refuse logs nothing. Ops: ("deposit", account, amount), ("withdraw", account, amount),
    ("prices", in, out, fee_bps), ("job", client, provider, in, out, posted|voided|retried)."""
    w = worker()
    await s.ensure_schedule(
        lambda i: le.price_schedule(OPERATOR, DEFAULT_SCHEDULE.with_from_index(i))
    )
    await s.add_evidence(w.digest, w.bundle.SerializeToString())
    await s.append(le.deposit(OPERATOR, "client:a", 20_000, "seed"))
    for n, op in enumerate(history):
        if cp is not None and n == len(history) // 2:
            await cp.maybe_sign(force=True)
        with contextlib.suppress(GatewayError):  # refused by the rules: nothing logged
            if op[0] == "deposit":
                await s.append(le.deposit(OPERATOR, op[1], op[2], f"dep-{n}"))
            elif op[0] == "withdraw":
                holder = HOLDERS[op[1]]
                await s.append(le.account_key(holder, op[1]))
                await s.append(le.withdrawal(holder, op[1], op[2], f"wd-{n}"))
            elif op[0] == "prices":
                size = await s.log_size()
                schedule = PriceSchedule(Price(op[1], op[2]), (), op[3], "network:fee", size)
                await s.append(le.price_schedule(OPERATOR, schedule))
            else:
                _, client, provider, tin, tout, outcome = op
                await s.hold(job(n), client, s.current_schedule().cost_micro("m", tin, tout))
                if outcome != "posted":
                    await s.void(job(n))
                if outcome == "retried":
                    await s.hold(job(n), client, s.current_schedule().cost_micro("m", tin, tout))
                if outcome != "voided":
                    jws = w.receipt(n, client, provider, (tin, tout))
                    await s.settle(job(n), receipt_jws=jws, evidence_sha256=w.digest)
