"""Long-running roles: the demo, a gateway, a worker."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ccgw.commands._common import (
    EXIT_USAGE,
    CliError,
    Subparsers,
    add_simulated_root,
    add_tls_ca,
    read_bytes,
    read_text,
    until_signal,
    warn,
)
from ccgw.runtime import tune_gc_for_serving


def register(sub: Subparsers) -> None:
    d = sub.add_parser("demo", help="run a gateway, a worker and one real request on loopback")
    d.add_argument("--prompt", default="Confidential inference on attested hardware")
    d.add_argument("--max-new-tokens", type=int, default=24)
    d.add_argument("--post-quantum", action="store_true", help="seal with ML-KEM-768+X25519")
    d.add_argument("--data-dir", type=Path, default=None, help="keep the demo's files here")
    d.set_defaults(func=_demo, default_log_level="WARNING")

    g = sub.add_parser("gateway", help="run a gateway")
    g.add_argument("--listen", default="127.0.0.1:7443", help="host:port to serve gRPC on")
    g.add_argument(
        "--db", default="ccgw-gateway.sqlite3", help="SQLite file, or postgresql://... for replicas"
    )
    g.add_argument(
        "--db-schema", default="ccgw", help="PostgreSQL schema (with --db postgresql://)"
    )
    g.add_argument(
        "--auth-pubkey",
        type=Path,
        action="append",
        required=True,
        help="public key (PEM) that signs tokens; repeat to accept several",
    )
    add_simulated_root(g)
    g.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain")
    g.add_argument("--tls-key", type=Path, default=None, help="PEM private key")
    g.add_argument(
        "--log-key", type=Path, required=True, help="Ed25519 key (ccgw keygen) signing checkpoints"
    )
    g.add_argument("--log-origin", default="ccgw.local/log", help="origin line of checkpoints")
    g.add_argument("--policy", type=Path, default=None, help="attestation policy file (TOML/JSON)")
    g.add_argument(
        "--metrics-listen", default=None, help="host:port for Prometheus /metrics (off if unset)"
    )
    g.add_argument("--no-reflection", action="store_true", help="turn gRPC server reflection off")
    g.set_defaults(func=_gateway)

    w = sub.add_parser("worker", help="run a worker")
    w.add_argument("--gateway", required=True, help="host:port of the gateway")
    w.add_argument("--token-file", type=Path, required=True, help="provider token (ccgw token)")
    w.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=DIR[@SHA256]",
        help="serve the model in DIR as NAME; pin its weights digest (ccgw model digest)",
    )
    w.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:0 …")
    w.add_argument("--region", default="", help="region hint for routing")
    add_tls_ca(w)
    w.add_argument(
        "--simulated-tee",
        type=Path,
        metavar="VENDOR_DIR",
        default=None,
        help="run on the SIMULATED TEE from `ccgw sim-root` (no hardware protection)",
    )
    w.set_defaults(func=_worker)


def _demo(args: argparse.Namespace) -> int:
    from ccgw.demo import run_demo

    return asyncio.run(run_demo(args.prompt, args.max_new_tokens, args.post_quantum, args.data_dir))


def _gateway(args: argparse.Namespace) -> int:
    from ccgw.gateway.config import GatewayConfig
    from ccgw.gateway.server import start_gateway

    if (args.tls_cert is None) != (args.tls_key is None):
        raise CliError("--tls-cert and --tls-key go together", EXIT_USAGE)
    sim_pem = (
        read_bytes(args.allow_simulated_tee, "simulated root") if args.allow_simulated_tee else None
    )
    if sim_pem is not None:
        warn("this gateway ALSO admits workers on the SIMULATED TEE: no hardware protection")
    config = GatewayConfig(
        listen=args.listen,
        db_path=Path(args.db),
        db_dsn=args.db if args.db.startswith(("postgresql://", "postgres://")) else None,
        db_schema=args.db_schema,
        auth_public_keys_pem=tuple(read_bytes(p, "auth public key") for p in args.auth_pubkey),
        allow_simulated_tee=sim_pem is not None,
        simulated_root_pem=sim_pem,
        tls_cert_pem=read_bytes(args.tls_cert, "TLS certificate") if args.tls_cert else None,
        tls_key_pem=read_bytes(args.tls_key, "TLS key") if args.tls_key else None,
        log_key_pem=read_bytes(args.log_key, "log key"),
        log_origin=args.log_origin,
        policy_path=args.policy,
        metrics_listen=args.metrics_listen,
        reflection=not args.no_reflection,
    )

    async def serve() -> None:
        gw = await start_gateway(config)
        tune_gc_for_serving()
        print(f"gateway listening on port {gw.port}", flush=True)
        await until_signal()
        await gw.stop(config.limits.shutdown_grace_s)

    asyncio.run(serve())
    return 0


def _worker(args: argparse.Namespace) -> int:
    from ccgw.enclave.agent import WorkerAgent
    from ccgw.enclave.config import WorkerConfig
    from ccgw.enclave.engine import load_engine
    from ccgw.enclave.tee import CpuTee, GpuAttester

    token = read_text(args.token_file, "provider token")
    engines = {}
    for spec in args.model:
        name, eq, rest = spec.partition("=")
        path, _, sha = rest.partition("@")
        if not eq or not name or not path:
            raise CliError(f"--model {spec!r}: expected NAME=DIR[@SHA256]")
        try:
            pinned = bytes.fromhex(sha) if sha else None
        except ValueError:
            raise CliError(f"--model {spec!r}: the digest after @ is not hex") from None
        engines[name] = load_engine(Path(path), name, expected_sha256=pinned, device=args.device)
    cpu: CpuTee
    gpu: GpuAttester | None
    if args.simulated_tee is not None:
        from ccgw.simtee import SimulatedSnpTee, SimulatedVendor

        warn("running on the SIMULATED TEE: no hardware protection")
        cpu = SimulatedSnpTee(SimulatedVendor.load(args.simulated_tee))
        gpu = None
    else:
        from ccgw.enclave.evidence import detect_real_tee

        cpu, gpu = detect_real_tee(require_gpu=args.device != "cpu")
    config = WorkerConfig(
        gateway=args.gateway,
        provider_token=token,
        models=(),
        region=args.region,
        device=args.device,
        tls_ca_pem=read_bytes(args.tls_ca, "TLS CA") if args.tls_ca else None,
    )

    async def serve() -> None:
        agent = WorkerAgent(config, engines, cpu, gpu)
        running = asyncio.create_task(agent.run())
        tune_gc_for_serving()
        stop = asyncio.create_task(until_signal())
        await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stop.done():  # SIGTERM/SIGINT: finish the jobs in flight, then leave
            await agent.drain(config.limits.drain_timeout_s)
        stop.cancel()
        await running

    asyncio.run(serve())
    return 0
