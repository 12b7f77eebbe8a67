"""`ccgw proxy`: the local OpenAI-compatible attesting proxy (ccgw.client.proxy)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ccgw.commands._common import (
    CliError,
    Subparsers,
    add_release_trust,
    add_simulated_root,
    add_tls_ca,
    policy_and_roots,
    read_bytes,
    read_text,
    read_token,
    release_trust,
    until_signal,
)


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "proxy",
        help="serve an OpenAI-compatible API on 127.0.0.1 that verifies and seals every call",
        description="Point an OpenAI client's base_url at http://HOST:PORT/v1. Every call is a "
        "confidential job: the worker is verified against the policy before anything is sent.",
    )
    p.add_argument("--gateway", required=True, help="host:port of the gateway")
    p.add_argument("--token-file", type=Path, required=True, help="client token (ccgw token)")
    p.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        help="host:port to serve HTTP on (port 0 = any free port); off loopback only with "
        "--api-key-file",
    )
    p.add_argument(
        "--api-key-file",
        type=Path,
        default=None,
        help="require `Authorization: Bearer <the key in this file>` from apps",
    )
    p.add_argument("--policy", type=Path, default=None, help="attestation policy file")
    add_release_trust(p)
    add_simulated_root(p)
    add_tls_ca(p)
    p.add_argument(
        "--body-bytes-max", type=int, default=None, help="largest request body accepted, in bytes"
    )
    p.set_defaults(func=_proxy, default_log_level="WARNING")


def _listen(spec: str) -> tuple[str, int]:
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CliError(f"--listen {spec!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _proxy(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ccgw.client.proxy import ProxyConfig, ProxyLimits, serve
    from ccgw.client.proxy.errors import ApiError
    from ccgw.client.sdk import Client

    token = read_token(args.token_file, "client")
    policy, roots = policy_and_roots(args.policy, args.allow_simulated_tee)
    policy, trust = release_trust(args, policy)
    host, port = _listen(args.listen)
    limits = ProxyLimits()
    if args.body_bytes_max is not None:
        if args.body_bytes_max < 1024:
            raise CliError("--body-bytes-max must be at least 1024")
        limits = replace(limits, body_bytes_max=args.body_bytes_max)
    api_key = read_text(args.api_key_file, "API key file") if args.api_key_file else None
    if args.api_key_file and not api_key:
        raise CliError(f"API key file {args.api_key_file} is empty")
    config = ProxyConfig(args.gateway, host, port, api_key, limits)
    tls = read_bytes(args.tls_ca, "TLS CA") if args.tls_ca else None

    async def run() -> int:
        client = Client.connect(args.gateway, token, policy, roots, tls_ca_pem=tls, releases=trust)
        try:
            runner = await serve(client, config)
        except ApiError as exc:
            raise CliError(str(exc)) from None
        except OSError as exc:
            raise CliError(f"cannot listen on {args.listen}: {exc.strerror}") from None
        bound = runner.addresses[0]
        print(f"proxy listening on http://{bound[0]}:{bound[1]}/v1", flush=True)
        try:
            await until_signal()
        finally:
            await runner.cleanup()
        return 0

    return asyncio.run(run())
