"""Load benchmark: ccgw end to end against a bare grpc.aio two-hop relay, in the same run.

ccgw:  SDK clients (own processes) -> gateway (own process, SQLite) -> worker (own process,
       simulated TEE, an echo engine answering 4 chunks of ~1 KiB) -> back; every job sealed,
       relayed, receipt-verified by gateway and client, held and settled in the ledger and logged.
bare:  clients (own processes) -> relay (own process) -> backend (own process, dialled in to the
       relay over one bidi stream); 1 KiB request, 4 x 1 KiB replies, raw bytes, no checks.

With --pg DSN, the same gateway runs on PostgreSQL (`ccgw-pg`: one gateway; `ccgw-pg2`: two gateway
replicas on one schema, a worker on each, the client processes split between them), each system on
a fresh schema dropped afterwards. The PostgreSQL server's own CPU is not in the CPU column.

Cells (system x concurrency) are interleaved, round after round, so both systems see the same
machine; each cell reports jobs/s, p50 and p99 latency, and the CPU time per job summed over all
processes of that system (from /proc). The table gives the median over rounds and the spread.

    python bench/load_bench.py                      # concurrency 1, 8, 64; 3 rounds of 4 s cells
    python bench/load_bench.py --rounds 5 --seconds 6 --client-procs 4
    python bench/load_bench.py --systems ccgw,ccgw-pg,ccgw-pg2 --pg postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccgw.runtime import tune_gc_for_serving

PROMPT = " ".join(["word"] * 180)  # 899 characters: the sealed request fills the 1 KiB bucket
REPLY_TEXT = "x" * 1000  # each of the 4 answer chunks carries ~1 KiB
BARE_REQUEST = b"r" * 1024
BARE_REPLY = b"a" * 1024
ACCOUNTS_MAX = 16


# --------------------------------------------------------------------------- echo engine -----
class BenchEngine:
    """Answers every prompt with 4 text pieces of ~1 KiB (16 tokens each: one chunk apiece)."""

    device = "cpu"

    def __init__(self) -> None:
        import hashlib

        self.model_sha256 = hashlib.sha256(b"bench-echo").digest()

    async def generate(self, req: Any) -> AsyncIterator[Any]:
        from ccgw.enclave.engine import Finished, TextDelta

        for i in range(4):
            yield TextDelta(text=REPLY_TEXT, tokens=16 if i < 3 else 15)
        yield Finished(input_tokens=180, output_tokens=63, finish_reason="length")

    async def aclose(self) -> None:
        return None


# --------------------------------------------------------------------------- roles -----------
async def role_gateway(d: Path, sync: str, db: str, schema: str) -> None:
    from ccgw.gateway.config import GatewayConfig, GatewayLimits
    from ccgw.gateway.server import start_gateway
    from ccgw.logs import configure

    # The canonical job line is part of the cost measured (CCGW_BENCH_LOG_LEVEL to compare).
    configure(os.environ.get("CCGW_BENCH_LOG_LEVEL", "INFO"), json=True)
    log_key = d / "log.key"
    config = GatewayConfig(
        listen="127.0.0.1:0",
        db_path=d / "gw.sqlite3",
        db_dsn=db or None,
        db_schema=schema,
        auth_public_keys_pem=((d / "auth.pub").read_bytes(),),
        allow_simulated_tee=True,
        simulated_root_pem=(d / "sim" / "root.pem").read_bytes(),
        log_key_pem=log_key.read_bytes() if log_key.exists() else None,
        limits=GatewayLimits(**_unlimited_quotas(GatewayLimits)),
    )
    store = None if db else _open_store(config, sync)  # PostgreSQL: as `ccgw gateway` opens it
    gw = await start_gateway(config, store=store)
    if os.environ.get("CCGW_BENCH_DEFAULT_GC") is None:
        tune_gc_for_serving()  # what `ccgw gateway` does
    print(json.dumps({"port": gw.port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await gw.stop(1.0)


def _open_store(config: Any, sync: str) -> Any:
    """The gateway's store; `sync` variants isolate the cost of fsync (NORMAL) and of the thread
    hop (INLINE: transactions on the event loop) — never the default."""
    try:
        from ccgw.gateway.store.factory import open_store
    except ImportError:  # code from before the log of entries (--before)
        from ccgw.gateway.store.sqlite import SqliteStore  # type: ignore[attr-defined]

        store = SqliteStore(config.db_path, config.network_account)
        if sync != "FULL":
            store._conn.execute("PRAGMA synchronous=NORMAL")
        if sync == "INLINE":
            store._run = _inline_tx(store)
        return store
    store = open_store(config.db_path)
    if sync != "FULL":
        store.backend.durable_sync = "NORMAL"
    if sync == "INLINE":
        backend = store.backend

        async def write(fn: Any) -> Any:
            (out,) = backend.run_batch([fn])
            if out.error is not None:
                raise out.error
            return out.value

        async def read(fn: Any) -> Any:
            return backend.read_now(fn)

        backend.write, backend.read = write, read
    return store


def _unlimited_quotas(limits: Any) -> dict[str, float]:
    """The bench's 16 accounts run far above a real account's rate: no per-account rate limit
    (older code, run with --before, has none to lift)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(limits)}
    want = {"account_jobs_per_s": 1e9, "account_jobs_burst": 10**9}
    return {k: v for k, v in want.items() if k in names}


def _inline_tx(store: Any) -> Any:
    async def run(fn: Any) -> Any:
        with store._lock:
            store._conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(store._conn)
            except BaseException:
                store._conn.execute("ROLLBACK")
                raise
            store._conn.execute("COMMIT")
            return out

    return run


async def role_worker(d: Path, address: str) -> None:
    from ccgw.enclave.agent import WorkerAgent
    from ccgw.enclave.config import WorkerConfig, WorkerLimits
    from ccgw.logs import configure
    from ccgw.simtee import SimulatedSnpTee, SimulatedVendor

    configure("WARNING", json=True)
    config = WorkerConfig(
        gateway=address,
        provider_token=(d / "provider.jwt").read_text(),
        models=(),
        limits=WorkerLimits(jobs_in_flight_max=64, heartbeat_interval_s=5.0),
    )
    agent = WorkerAgent(
        config, {"echo": BenchEngine()}, SimulatedSnpTee(SimulatedVendor.load(d / "sim"))
    )  # type: ignore[dict-item]
    task = asyncio.create_task(agent.run())
    await agent.admitted.wait()
    if os.environ.get("CCGW_BENCH_DEFAULT_GC") is None:
        tune_gc_for_serving()  # what `ccgw worker` does
    print(json.dumps({"admitted": agent.worker_id}), flush=True)
    await task


async def role_relay() -> None:
    import grpc

    backend: asyncio.Queue[bytes] = asyncio.Queue()
    calls: dict[bytes, asyncio.Queue[bytes]] = {}
    counter = iter(range(1 << 62))

    async def connect(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
        async def read() -> None:
            async for m in requests:
                q = calls.get(m[:8])
                if q is not None:
                    q.put_nowait(m)

        reader = asyncio.create_task(read())
        try:
            while True:
                yield await backend.get()
        finally:
            reader.cancel()

    async def call(request: bytes, context: Any) -> AsyncIterator[bytes]:
        cid = next(counter).to_bytes(8, "big")
        q: asyncio.Queue[bytes] = asyncio.Queue()
        calls[cid] = q
        try:
            backend.put_nowait(cid + request)
            while True:
                m = await q.get()
                yield m[9:]
                if m[8]:
                    return
        finally:
            del calls[cid]

    server = grpc.aio.server()
    ident = (lambda b: b, lambda b: b)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Relay",
                {
                    "Call": grpc.unary_stream_rpc_method_handler(
                        call, request_deserializer=ident[0], response_serializer=ident[1]
                    ),
                    "Connect": grpc.stream_stream_rpc_method_handler(
                        connect, request_deserializer=ident[0], response_serializer=ident[1]
                    ),
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(json.dumps({"port": port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(0)


async def role_backend(address: str) -> None:
    import grpc

    outbox: asyncio.Queue[bytes] = asyncio.Queue()

    async def replies() -> AsyncIterator[bytes]:
        while True:
            yield await outbox.get()

    async with grpc.aio.insecure_channel(address) as ch:
        stream = ch.stream_stream("/bench.Relay/Connect")(replies())
        print(json.dumps({"connected": True}), flush=True)
        async for req in stream:
            cid = req[:8]
            for i in range(4):
                outbox.put_nowait(cid + (b"\x01" if i == 3 else b"\x00") + BARE_REPLY)


async def role_client(d: Path, system: str, address: str, index: int) -> None:
    """Reads `run <tasks> <seconds>` lines; answers each with one JSON line of latencies."""
    import grpc

    loop = asyncio.get_running_loop()
    async with grpc.aio.insecure_channel(address) as ch:
        job = await _client_job(d, system, ch, index)
        await job()  # warm: connection, worker listing, evidence verification
        print(json.dumps({"ready": True}), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            _, tasks, seconds = line.split()
            lat: list[float] = []
            errors = 0
            first_error = ""
            stop = time.perf_counter() + float(seconds)

            async def worker() -> None:
                nonlocal errors, first_error
                while time.perf_counter() < stop:
                    t0 = time.perf_counter()
                    try:
                        await job()
                    except Exception as exc:  # noqa: BLE001 - counted and reported
                        errors += 1
                        first_error = first_error or f"{exc.__class__.__name__}: {exc}"
                        continue
                    lat.append(time.perf_counter() - t0)

            await asyncio.gather(*(worker() for _ in range(int(tasks))))
            print(json.dumps({"lat": lat, "errors": errors, "error": first_error}), flush=True)


async def _client_job(d: Path, system: str, ch: Any, index: int) -> Any:
    if system == "bare":
        call = ch.unary_stream("/bench.Relay/Call")

        async def bare() -> None:
            n = 0
            async for _ in call(BARE_REQUEST):
                n += 1
            if n != 4:
                raise RuntimeError(f"{n} replies")

        return bare
    from ccgw.client.sdk import Client
    from ccgw.simtee import SimulatedVendor
    from ccgw.verify.attestation.policy import Policy
    from ccgw.verify.attestation.roots import RootStore

    roots = RootStore.default().with_simulated(SimulatedVendor.load(d / "sim").root_pem())
    token = (d / f"client{index % ACCOUNTS_MAX}.jwt").read_text()
    client = Client(ch, token, Policy().allowing_simulated(), roots)

    async def ccgw() -> None:
        a = await client.complete("echo", prompt=PROMPT, max_new_tokens=64)
        if len(a.text) != 4000 or a.receipt is None:
            raise RuntimeError("incomplete answer")

    return ccgw


# --------------------------------------------------------------------------- orchestration ---
class Proc:
    def __init__(self, *args: str, root: Path | None = None) -> None:
        script = Path(__file__) if root is None else root / "bench" / "load_bench.py"
        env = dict(os.environ)
        if root is not None:  # the code before: as it ran then (default GC)
            env["CCGW_BENCH_DEFAULT_GC"] = "1"
        self.p = subprocess.Popen(
            [sys.executable, str(script), *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def read(self) -> dict[str, Any]:
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"process {self.p.args} ended")
        return dict(json.loads(line))

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def cpu_s(self) -> float:
        try:
            fields = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.p.stdin is not None:
            self.p.stdin.close()
        for step in (self.p.terminate, self.p.kill):
            try:
                self.p.wait(3)
                return
            except subprocess.TimeoutExpired:
                step()


def prepare(d: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ccgw.gateway.auth import issue_token
    from ccgw.simtee import SimulatedVendor

    key = Ed25519PrivateKey.generate()
    (d / "auth.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    SimulatedVendor.generate().save(d / "sim")
    (d / "provider.jwt").write_text(issue_token(key, sub="provider:bench", role="provider"))
    for i in range(ACCOUNTS_MAX):
        (d / f"client{i}.jwt").write_text(issue_token(key, sub=f"client:b{i}", role="client"))


def prepare_ledger(d: Path, db: str = "", schema: str = "ccgw") -> None:
    """A new ledger with every bench account funded (run by the code under test: --before
    prepares its own database format); on PostgreSQL when `db` is a DSN."""
    try:
        from ccgw.gateway.store.factory import open_store
    except ImportError:  # code from before the log of entries (--before)
        from ccgw.gateway.store.sqlite import SqliteStore  # type: ignore[attr-defined]

        old = SqliteStore(d / "gw.sqlite3")

        async def deposit() -> None:
            for i in range(ACCOUNTS_MAX):
                await old.deposit(f"client:b{i}", 10**15, f"bench-deposit-{i}")
            await old.close()

        asyncio.run(deposit())
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ccgw.verify import log_entries as le

    key = Ed25519PrivateKey.generate()
    (d / "log.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pub = key.public_key().public_bytes_raw()

    async def fund() -> None:
        store = open_store(db or d / "gw.sqlite3", schema=schema, operator=pub, create=True)
        deposits = [
            le.deposit(key, f"client:b{i}", 10**15, f"bench-deposit-{i}")
            for i in range(ACCOUNTS_MAX)
        ]
        await store.import_entries(deposits)
        await store.close()

    asyncio.run(fund())


class System:
    def __init__(
        self,
        name: str,
        servers: list[Proc],
        addresses: list[str],
        d: Path,
        procs: int,
        root: Path | None = None,
    ) -> None:
        """Client process i talks to addresses[i % len(addresses)] (replicas share the load)."""
        self.name, self.servers = name, servers
        self.clients = [
            Proc(
                "--role",
                "client",
                "--dir",
                str(d),
                "--system",
                name,
                "--address",
                addresses[i % len(addresses)],
                "--index",
                str(i),
                root=root,
            )
            for i in range(procs)
        ]
        for c in self.clients:
            c.read()

    def run(self, concurrency: int, seconds: float) -> dict[str, float]:
        n = len(self.clients)
        per = [concurrency // n + (1 if i < concurrency % n else 0) for i in range(n)]
        busy = [c for c, k in zip(self.clients, per, strict=True) if k]
        everyone = self.servers + self.clients
        cpu0 = [p.cpu_s() for p in everyone]
        for c, k in zip(self.clients, per, strict=True):
            if k:
                c.send(f"run {k} {seconds}")
        results = [c.read() for c in busy]
        used = [p.cpu_s() - c0 for p, c0 in zip(everyone, cpu0, strict=True)]
        cpu = sum(used)
        lat = sorted(x for r in results for x in r["lat"])
        errors = sum(r["errors"] for r in results)
        for r in results:
            if r["error"]:
                print(f"# {self.name}: {r['errors']} errors, e.g. {r['error']}", file=sys.stderr)
        if not lat:
            return {
                "jobs_s": 0.0,
                "p50_ms": float("nan"),
                "p99_ms": float("nan"),
                "cpu_ms": 0.0,
                "errors": errors,
            }
        per_job = [round(u / len(lat) * 1000, 2) for u in used]
        return {
            "cpu_ms_servers": per_job[: len(self.servers)],  # type: ignore[dict-item]
            "cpu_ms_clients": round(sum(per_job[len(self.servers) :]), 2),
            "jobs_s": len(lat) / seconds,
            "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
            "cpu_ms": cpu / len(lat) * 1000,
            "errors": errors,
        }

    def stop(self) -> None:
        for p in self.clients + self.servers:
            p.stop()


def spread(values: list[float]) -> str:
    med = statistics.median(values)
    return f"{med:8.1f} ({min(values):.1f}–{max(values):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--role", default="main")
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--system", default="")
    ap.add_argument("--address", default="")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--client-procs", type=int, default=4)
    ap.add_argument("--sync", default="FULL", help=argparse.SUPPRESS)
    ap.add_argument("--db", default="", help=argparse.SUPPRESS)  # a role's PostgreSQL DSN
    ap.add_argument("--schema", default="ccgw", help=argparse.SUPPRESS)
    ap.add_argument(
        "--pg",
        default="",
        help="PostgreSQL DSN for the systems ccgw-pg and ccgw-pg2 (a fresh schema each, dropped "
        "at the end), e.g. postgresql://postgres@127.0.0.1:5432/test",
    )
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a checkout of older code (with this script copied in): adds system ccgw-before",
    )
    ap.add_argument(
        "--systems",
        default="bare,ccgw,ccgw-nosync",
        help="bare, ccgw, ccgw-nosync (the gateway's SQLite at synchronous=NORMAL: no fsync per "
        "commit), ccgw-before (needs --before), ccgw-pg (one gateway on PostgreSQL; needs --pg), "
        "ccgw-pg2 (two gateway replicas on one PostgreSQL schema, a worker each; needs --pg)",
    )
    a = ap.parse_args()
    if a.role == "ledger":
        prepare_ledger(a.dir, a.db, a.schema)
        print(json.dumps({"ledger": "ready"}), flush=True)
        return None
    roles = {
        "gateway": lambda: role_gateway(a.dir, a.sync, a.db, a.schema),
        "worker": lambda: role_worker(a.dir, a.address),
        "relay": role_relay,
        "backend": lambda: role_backend(a.address),
        "client": lambda: role_client(a.dir, a.system, a.address, a.index),
    }
    if a.role in roles:
        return profiled(a.role, a.index, lambda: asyncio.run(roles[a.role]()))
    run_all(a)


def profiled(role: str, index: int, fn: Any) -> None:
    """With CCGW_BENCH_PROFILE=DIR, each process writes cProfile stats to DIR/<role><index>."""
    out = os.environ.get("CCGW_BENCH_PROFILE")
    if not out:
        return fn()  # type: ignore[no-any-return]
    import cProfile
    import signal

    prof = cProfile.Profile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    prof.enable()
    try:
        fn()
    finally:
        prof.disable()
        prof.dump_stats(f"{out}/{role}{index}.prof")


def run_all(a: argparse.Namespace) -> None:
    levels = [int(x) for x in a.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        prepare(d)
        names = a.systems.split(",")
        if any(n.startswith("ccgw-pg") for n in names) and not a.pg:
            raise SystemExit("ccgw-pg and ccgw-pg2 need --pg DSN")
        schemas: list[str] = []
        systems: dict[str, System] = {}
        cells: dict[tuple[str, int], list[dict[str, float]]] = {}
        try:
            for name in names:
                systems[name] = start_system(name, d, a.client_procs, a.before, a.pg, schemas)
            for r in range(a.rounds):
                for c in levels:
                    order = names if r % 2 == 0 else names[::-1]
                    for name in order:
                        res = systems[name].run(c, a.seconds)
                        cells.setdefault((name, c), []).append(res)
                        print(f"# round {r} {name:4} c={c:3} {res}", file=sys.stderr)
        finally:
            for s in systems.values():
                s.stop()
            drop_schemas(a.pg, schemas)
    report(cells, levels, names, a)


def drop_schemas(dsn: str, schemas: list[str]) -> None:
    if not schemas:
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def start_system(
    name: str, d: Path, client_procs: int, before: Path | None, pg: str, schemas: list[str]
) -> System:
    root = before if name == "ccgw-before" else None
    if name == "bare":
        relay = Proc("--role", "relay")
        addrs = [f"127.0.0.1:{relay.read()['port']}"]
        backend = Proc("--role", "backend", "--address", addrs[0])
        backend.read()
        servers = [relay, backend]
    else:
        gdir = d / name
        gdir.mkdir()
        for f in d.iterdir():
            if f.is_file() or f.name == "sim":
                (gdir / f.name).symlink_to(f)
        db: list[str] = []
        if name.startswith("ccgw-pg"):
            schemas.append(f"bench_{name.replace('-', '_')}_{os.getpid()}")
            db = ["--db", pg, "--schema", schemas[-1]]
        Proc("--role", "ledger", "--dir", str(gdir), *db, root=root).read()
        sync = {"ccgw-nosync": "NORMAL", "ccgw-inline": "INLINE"}.get(name, "FULL")
        servers, addrs = [], []
        for _ in range(2 if name == "ccgw-pg2" else 1):
            gw = Proc("--role", "gateway", "--dir", str(gdir), "--sync", sync, *db, root=root)
            addrs.append(f"127.0.0.1:{gw.read()['port']}")
            worker = Proc("--role", "worker", "--dir", str(gdir), "--address", addrs[-1], root=root)
            worker.read()
            servers += [gw, worker]
    print(f"# {name}: pids {[p.p.pid for p in servers]}", file=sys.stderr)
    return System(name, servers, addrs, d, client_procs, root)


def report(
    cells: dict[tuple[str, int], list[dict[str, float]]],
    levels: list[int],
    names: list[str],
    a: argparse.Namespace,
) -> None:
    print(
        f"## {a.rounds} rounds x {a.seconds:g} s per cell, {a.client_procs} client processes, "
        f"{os.cpu_count()} CPUs; median (min–max) over rounds\n"
    )
    print("| in flight | system | jobs/s | p50 ms | p99 ms | CPU ms/job | errors |")
    print("| ---: | :--- | ---: | ---: | ---: | ---: | ---: |")
    for c in levels:
        for name in names:
            rs = cells[(name, c)]
            print(
                f"| {c} | {name} | {spread([r['jobs_s'] for r in rs])} | "
                f"{spread([r['p50_ms'] for r in rs])} | {spread([r['p99_ms'] for r in rs])} | "
                f"{spread([r['cpu_ms'] for r in rs])} | {sum(r['errors'] for r in rs):.0f} |"
            )
    pg = [n for n in names if n.startswith("ccgw-pg")]
    if "ccgw" in names and pg:
        print("\n| in flight | system | throughput vs ccgw (SQLite) | p50 − ccgw (ms) |")
        print("| ---: | :--- | ---: | ---: |")
        for c in levels:
            for name in pg:
                _ratio_row(c, name, cells[(name, c)], cells[("ccgw", c)])
    if "bare" not in names:
        return
    print("\n| in flight | system | throughput vs bare | p50 − bare (ms) |")
    print("| ---: | :--- | ---: | ---: |")
    for c in levels:
        for name in names:
            if name == "bare":
                continue
            _ratio_row(c, name, cells[(name, c)], cells[("bare", c)])


def _ratio_row(
    c: int, name: str, rows: list[dict[str, float]], base: list[dict[str, float]]
) -> None:
    """Ratios cell by cell within a round (the same machine state), then median and spread."""
    pairs = list(zip(rows, base, strict=True))
    ratios = [g["jobs_s"] / b["jobs_s"] for g, b in pairs if b["jobs_s"]]
    deltas = [g["p50_ms"] - b["p50_ms"] for g, b in pairs]
    print(
        f"| {c} | {name} | {statistics.median(ratios):.2f}× "
        f"({min(ratios):.2f}–{max(ratios):.2f}) | {statistics.median(deltas):+.2f} "
        f"({min(deltas):+.2f}…{max(deltas):+.2f}) |"
    )


if __name__ == "__main__":
    main()
