"""Cost per job as the log grows (issue 11): the same operations measured on logs of 0, 100k and 1M
entries, which are built fast, directly through the store (SqlStore.import_entries: the same ledger
rules, one transaction per batch). The rows should stay flat within noise.

    python bench/log_scale_bench.py                       # SQLite: 0, 100k, 1M entries
    python bench/log_scale_bench.py --pg postgresql://postgres@127.0.0.1:5432/test --sizes 0,100000

Measured at each size (p50 / p99 latency, ops/s = 1 / mean):
  hold+settle   one job's hold, then the settle that logs its receipt and posts its reward
  checkpoint    sign a checkpoint of the head after one more entry (root from the frontier)
  proof         GetEntryProof for a random entry (validation, entry read, O(log n) nodes)
  consistency   GetConsistencyProof between a random earlier size and the head
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.checkpointer import Checkpointer
from ccgw.gateway.config import GatewayConfig, GatewayLimits
from ccgw.gateway.log_service import LogServicer
from ccgw.gateway.store.factory import open_store
from ccgw.gateway.store.sqlite import SqliteBackend
from ccgw.gateway.store.sqlstore import SqlStore
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.verify import log_entries as le
from ccgw.verify.prices import DEFAULT_SCHEDULE
from ccgw.verify.receipts import RECEIPT_VERSION

OPERATOR = Ed25519PrivateKey.generate()
CLIENTS = [f"client:c{i}" for i in range(100)]
PROVIDERS = [f"provider:p{i}" for i in range(100)]
BATCH_ENTRIES = 20_000
WARMUP_JOBS = 100
_HEADER = base64.urlsafe_b64encode(
    json.dumps({"alg": "EdDSA", "kid": "k" * 64, "typ": "ccgw-receipt+jws"}).encode()
).rstrip(b"=")
EVIDENCE = "ab" * 32


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def receipt_jws(job: bytes, client: str, provider: str) -> str:
    """A receipt of realistic size; its signature is random (the store trusts the gateway to have
    verified receipts; what is measured is what happens after)."""
    claims = {
        "v": RECEIPT_VERSION,
        "job_id": job.hex(),
        "worker_id": "w-0123456789abcdef",
        "key_id": "k" * 64,
        "account": client,
        "provider": provider,
        "model": "llama",
        "model_digest": "cd" * 32,
        "request_sha256": "ef" * 32,
        "answer_sha256": "01" * 32,
        "answer_chunks": 12,
        "input_tokens": random.randint(10, 2_000),
        "output_tokens": random.randint(10, 500),
        "started_at_ms": 1_700_000_000_000,
        "finished_at_ms": 1_700_000_001_000,
        "evidence_sha256": EVIDENCE,
        "finish_reason": "stop",
        # v3 (ADR 14): commitments and decoding parameters
        "input_commit": "23" * 32,
        "output_commit": "45" * 32,
        "temperature": "0.699999988079071",
        "top_p": "0.8999999761581421",
        "top_k": 0,
        "max_tokens": 512,
        "seed": "",
        "stop_count": 0,
        "engine_version": "ccgw-torch/1",
        "dtype": "bfloat16",
    }
    payload = b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    return b".".join((_HEADER, payload, b64(os.urandom(64)))).decode()


def receipt_entry(job: bytes) -> le.Entry:
    jws = receipt_jws(job, random.choice(CLIENTS), random.choice(PROVIDERS))
    return le.encode(le.ReceiptBody(jws, EVIDENCE))


async def build(store: SqlStore, size: int) -> float:
    """Grow the log to `size` entries (at least the schedule and one deposit per client), then
    receipts. Returns seconds."""
    t0 = time.perf_counter()
    await store.ensure_schedule(
        lambda i: le.price_schedule(OPERATOR, DEFAULT_SCHEDULE.with_from_index(i))
    )
    n = await store.import_entries([le.deposit(OPERATOR, c, 10**12, f"fund-{c}") for c in CLIENTS])
    while n < size:
        batch = [receipt_entry(uuid.uuid4().bytes) for _ in range(min(BATCH_ENTRIES, size - n))]
        n = await store.import_entries(batch)
        print(f"  built {n:,} entries ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    if isinstance(store.backend, SqliteBackend):
        store.backend.wal_checkpoint()
    return time.perf_counter() - t0


async def timed(n: int, op: Callable[[int], Awaitable[None]]) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await op(i)
        out.append(time.perf_counter() - t)
    return out


def stats(samples: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49] * 1e3, q[98] * 1e3, 1 / statistics.fmean(samples)


async def measure(store: SqlStore, jobs: int, proofs: int) -> dict[str, tuple[float, float, float]]:
    config = GatewayConfig(limits=GatewayLimits(checkpoint_every_entries=1))
    cp = Checkpointer(config, store, OPERATOR)
    log = LogServicer(config, store, cp)
    await cp.maybe_sign(force=True)

    async def hold_settle(i: int) -> None:
        job, client = uuid.uuid4().bytes, random.choice(CLIENTS)
        await store.hold(job, client, 10_000_000)
        jws = receipt_jws(job, client, random.choice(PROVIDERS))
        await store.settle(job, receipt_jws=jws, evidence_sha256=EVIDENCE)

    size = await store.log_size()

    async def proof(i: int) -> None:
        req = lpb.GetEntryProofRequest(index=random.randrange(size))
        await log.GetEntryProof(req, None)  # type: ignore[arg-type]

    async def consistency(i: int) -> None:
        head = (await store.latest_checkpoint() or (size, ""))[0]
        req = lpb.GetConsistencyProofRequest(first=random.randint(1, head), second=head)
        await log.GetConsistencyProof(req, None)  # type: ignore[arg-type]

    await timed(WARMUP_JOBS, hold_settle)
    out = {"hold+settle": stats(await timed(jobs, hold_settle))}
    signing = []
    for i in range(min(jobs, 200)):
        await hold_settle(i)  # one more entry (not timed), so each checkpoint is a new tree
        signing += await timed(1, lambda _: cp.maybe_sign(force=True))
    out["checkpoint"] = stats(signing)
    out["proof"] = stats(await timed(proofs, proof))
    out["consistency"] = stats(await timed(proofs, consistency))
    return out


def open_new(args: argparse.Namespace, tmp: Path, size: int) -> tuple[SqlStore, str | None]:
    pub = OPERATOR.public_key().public_bytes_raw()
    if args.pg:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        return open_store(args.pg, schema=schema, operator=pub, create=True), schema
    return open_store(tmp / f"log-{size}.db", operator=pub, create=True), None


async def reopen(
    args: argparse.Namespace, store: SqlStore, schema: str | None, path: Path
) -> SqlStore:
    """A gateway that starts on the grown log, with fresh connections. On PostgreSQL the bulk
    import's aftermath (autovacuum of the new rows, dirty buffers) is settled first, with VACUUM
    ANALYZE and a CHECKPOINT, so that it is not measured as the cost of the first jobs."""
    await store.close()
    if schema is None:
        return open_store(path)
    import psycopg

    with psycopg.connect(args.pg, autocommit=True) as c:
        c.execute(f'SET search_path TO "{schema}"')
        c.execute("VACUUM ANALYZE")
        c.execute("CHECKPOINT")
    return open_store(args.pg, schema=schema)


def drop(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="0,100000,1000000")
    ap.add_argument("--jobs", type=int, default=1_000, help="hold+settle samples per size")
    ap.add_argument("--proofs", type=int, default=1_000, help="proof samples per size")
    ap.add_argument("--pg", default=None, help="PostgreSQL DSN (default: SQLite in a temp dir)")
    ap.add_argument("--dir", type=Path, default=None, help="where SQLite logs go (default: temp)")
    args = ap.parse_args()
    random.seed(7)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp_s:
        for size in (int(s) for s in args.sizes.split(",")):
            store, schema = open_new(args, Path(tmp_s), size)
            try:
                built = await build(store, size)
                store = await reopen(args, store, schema, Path(tmp_s) / f"log-{size}.db")
                n = await store.log_size()
                res = await measure(store, args.jobs, args.proofs)
                rows.append((n, built, res))
                print(f"size {size:,}: built in {built:.0f} s; {res}", file=sys.stderr)
            finally:
                await store.close()
                if schema:
                    drop(args.pg, schema)
    backend = "PostgreSQL" if args.pg else "SQLite (WAL, synchronous=FULL)"
    print(f"\n## {backend}; {args.jobs} jobs and {args.proofs} proofs per size\n")
    print(
        "| entries | build s | hold+settle p50 / p99 ms | jobs/s | checkpoint p50 / p99 ms "
        "| proof p50 / p99 ms | proofs/s | consistency p50 / p99 ms |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size, built, r in rows:
        hs, ck, pr, co = r["hold+settle"], r["checkpoint"], r["proof"], r["consistency"]
        print(
            f"| {size:,} | {built:.0f} | {hs[0]:.2f} / {hs[1]:.2f} | {hs[2]:.0f} "
            f"| {ck[0]:.2f} / {ck[1]:.2f} | {pr[0]:.2f} / {pr[1]:.2f} | {pr[2]:.0f} "
            f"| {co[0]:.2f} / {co[1]:.2f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
