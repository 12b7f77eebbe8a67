"""`ccgw doctor`: check a provider's machine before running a worker (see ccgw.doctor)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ccgw.commands._common import (
    EXIT_CHECK_FAILED,
    EXIT_GATEWAY,
    CliError,
    Subparsers,
    add_tls_ca,
    read_bytes,
)


def register(sub: Subparsers) -> None:
    d = sub.add_parser(
        "doctor",
        help="check this machine for a worker: CPU TEE, GPU, driver, CC mode, NVML attestation, "
        "model digests, gateway, clock",
        description="One line per check with what to fix; exit 1 when any check FAILs.",
    )
    d.add_argument(
        "--gateway", default=None, help="host:port of the gateway to probe (gRPC health)"
    )
    add_tls_ca(d)
    d.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=DIR[@SHA256]",
        help="a model the worker will serve; its digest is computed and compared with the pin",
    )
    d.add_argument(
        "--device", default="cuda", help="the worker's torch device; `cpu` skips the GPU checks"
    )
    d.set_defaults(func=_doctor, default_log_level="WARNING")

    h = sub.add_parser(
        "health",
        help="exit 0 when the gateway's gRPC health says SERVING (container and k8s probes)",
    )
    h.add_argument("--gateway", required=True, help="host:port of the gateway")
    add_tls_ca(h)
    h.add_argument("--timeout-s", type=float, default=5.0, help="give up after this long")
    h.set_defaults(func=_health, default_log_level="WARNING")


def parse_model(spec: str) -> tuple[str, Path, bytes | None]:
    name, eq, rest = spec.partition("=")
    path, _, sha = rest.partition("@")
    if not eq or not name or not path:
        raise CliError(f"--model {spec!r}: expected NAME=DIR[@SHA256]")
    try:
        pinned = bytes.fromhex(sha) if sha else None
    except ValueError:
        raise CliError(f"--model {spec!r}: the digest after @ is not hex") from None
    if pinned is not None and len(pinned) != 32:
        raise CliError(f"--model {spec!r}: the digest must be 64 hex digits (SHA-256)")
    return name, Path(path), pinned


def _probe(address: str, tls_ca: Path | None, timeout_s: float = 5.0) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    creds = grpc.ssl_channel_credentials(read_bytes(tls_ca, "TLS CA")) if tls_ca else None
    ch = grpc.secure_channel(address, creds) if creds else grpc.insecure_channel(address)
    try:
        resp = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(), timeout=timeout_s
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
    except grpc.RpcError as exc:
        raise RuntimeError(f"{exc.code().name}: {exc.details()}") from None
    finally:
        ch.close()


def _health(args: argparse.Namespace) -> int:
    try:
        status = _probe(args.gateway, args.tls_ca, args.timeout_s)
    except RuntimeError as exc:
        raise CliError(f"gateway health check failed: {exc}", EXIT_GATEWAY) from None
    print(status)
    return 0 if status == "SERVING" else EXIT_GATEWAY


def _doctor(args: argparse.Namespace) -> int:
    from ccgw.doctor import FAIL, Machine, ModelArg, run_checks

    models = [ModelArg(*parse_model(s)) for s in args.model]
    probe = None
    if args.gateway:
        gateway, tls_ca = args.gateway, args.tls_ca
        probe = lambda: _probe(gateway, tls_ca)  # noqa: E731
    checks = run_checks(Machine(gateway_probe=probe, models=models, want_gpu=args.device != "cpu"))
    for c in checks:
        print(c.line())
    failed = [c for c in checks if c.status == FAIL]
    print(f"{len(failed)} check(s) failed" if failed else "ready to run a worker")
    return EXIT_CHECK_FAILED if failed else 0
