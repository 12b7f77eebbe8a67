"""PostgreSQL posting throughput: one ledger-wide lock against per-account row locks (issue 10),
and group commit (the writes that queue up while one transaction commits go in the next, behind
one ledger lock per batch).

Two store processes (as two gateway replicas would) share one schema; 64 concurrent clients in
all (32 per process, each its own account) run hold + settle back to back for a fixed time. After
each run the log is replayed through the ledger rules and compared with the running balances, so
a mode only counts if it stays correct. The modes are interleaved and repeated.

    python bench/ledger_lock_bench.py --pg postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.store.postgres import open_postgres
from ccgw.verify import ledger_rules
from ccgw.verify import log_entries as le
from ccgw.verify.prices import DEFAULT_SCHEDULE

PROCESSES = 2
CLIENTS_PER_PROCESS = 32
EVIDENCE = "ab" * 32


async def worker(args: argparse.Namespace) -> None:
    """One replica: CLIENTS_PER_PROCESS concurrent clients for `seconds`; prints a JSON line."""
    from log_scale_bench import receipt_jws

    store = open_postgres(
        args.pg, schema_name=args.schema, lock_mode=args.mode, pool_connections_max=args.pool
    )
    stop = time.monotonic() + args.seconds
    lat: list[float] = []

    async def client(c: int) -> None:
        account = f"client:r{args.replica}c{c}"
        while time.monotonic() < stop:
            job = uuid.uuid4().bytes
            t = time.perf_counter()
            await store.hold(job, account, 10_000_000)
            jws = receipt_jws(job, account, f"provider:p{c % 8}")
            await store.settle(job, receipt_jws=jws, evidence_sha256=EVIDENCE)
            lat.append(time.perf_counter() - t)

    await asyncio.gather(*(client(c) for c in range(CLIENTS_PER_PROCESS)))
    await store.close()
    print(json.dumps({"jobs": len(lat), "lat": sorted(lat)}))


async def prepare(dsn: str, schema: str, key: Ed25519PrivateKey) -> None:
    store = open_postgres(
        dsn, schema_name=schema, operator=key.public_key().public_bytes_raw(), create=True
    )
    await store.ensure_schedule(
        lambda i: le.price_schedule(key, DEFAULT_SCHEDULE.with_from_index(i))
    )
    accounts = [f"client:r{r}c{c}" for r in range(PROCESSES) for c in range(CLIENTS_PER_PROCESS)]
    await store.import_entries([le.deposit(key, a, 10**12, f"fund-{a}") for a in accounts])
    await store.close()


async def verify(dsn: str, schema: str, key: Ed25519PrivateKey) -> tuple[bool, int]:
    """Replay the whole log through the rules; compare with the stored running balances."""
    store = open_postgres(dsn, schema_name=schema)
    view = ledger_rules.MemoryLedger(key.public_key().public_bytes_raw())
    size, start = await store.log_size(), 0
    while start < size:
        for e in await store.entries(start, start + 5_000):
            if e.index != start:
                return False, size
            view.record(ledger_rules.apply(e.entry, e.index, view))
            start += 1
    _, rows = await store.accounts("", 1_000_000)
    await store.close()
    served = {
        r.account: r.balance_micro for r in rows if r.balance_micro or r.account in view.balances
    }
    return served == view.balances and ledger_rules.total(view.balances) == 0, size


def run_mode(args: argparse.Namespace, mode: str, key: Ed25519PrivateKey) -> dict[str, float]:
    schema = f"lockbench_{uuid.uuid4().hex[:8]}"
    asyncio.run(prepare(args.pg, schema, key))
    cmd = [sys.executable, __file__, "--worker", "--pg", args.pg, "--schema", schema]
    cmd += ["--mode", mode, "--seconds", str(args.seconds), "--pool", str(args.pool)]
    procs = [
        subprocess.Popen([*cmd, "--replica", str(r)], stdout=subprocess.PIPE)
        for r in range(PROCESSES)
    ]
    outs = [json.loads(p.communicate()[0]) for p in procs]
    ok, size = asyncio.run(verify(args.pg, schema, key))
    import psycopg

    with psycopg.connect(args.pg, autocommit=True) as c:
        c.execute(f'DROP SCHEMA "{schema}" CASCADE')
    jobs = sum(o["jobs"] for o in outs)
    lat = sorted(x for o in outs for x in o["lat"])
    q = statistics.quantiles(lat, n=100)
    return {
        "jobs_s": jobs / args.seconds,
        "p50": q[49] * 1e3,
        "p99": q[98] * 1e3,
        "ok": float(ok and size == 1 + PROCESSES * CLIENTS_PER_PROCESS + jobs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pg", required=True)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pool", type=int, default=8, help="connections per process")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--schema", default="", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="account", help=argparse.SUPPRESS)
    ap.add_argument("--replica", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        asyncio.run(worker(args))
        return
    key = Ed25519PrivateKey.generate()
    modes = ["ledger", "account", "group"]
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode in modes if r % 2 == 0 else modes[::-1]:
            res = run_mode(args, mode, key)
            results[mode].append(res)
            print(f"round {r} {mode}: {res}", file=sys.stderr)
    print(
        f"\n## PostgreSQL, {PROCESSES} store processes x {CLIENTS_PER_PROCESS} concurrent clients, "
        f"{args.pool} connections each, {args.seconds:.0f} s per run, {args.rounds} rounds\n"
    )
    print(
        "| locking | jobs/s (median) | hold+settle p50 ms | p99 ms | log replays to the balances |"
    )
    print("| :--- | ---: | ---: | ---: | :--- |")
    for mode, runs in results.items():
        med = lambda k, runs=runs: statistics.median(x[k] for x in runs)  # noqa: E731
        ok = "yes" if all(x["ok"] for x in runs) else "NO"
        print(f"| {mode} | {med('jobs_s'):.0f} | {med('p50'):.1f} | {med('p99'):.1f} | {ok} |")


if __name__ == "__main__":
    main()
