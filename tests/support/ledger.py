"""Ledger test helpers: an operator key, stores opened on both backends, and receipts for jobs
(signed by a test worker key; the store trusts the gateway to have verified them)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.store.factory import open_store
from ccgw.gateway.store.sqlstore import SqlStore
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
