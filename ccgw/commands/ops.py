"""Operator set-up commands: keys, tokens, development TLS certificates, the simulated vendor,
the tiny model."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from ccgw.commands._common import CliError, Subparsers, load_private_key


def register(sub: Subparsers) -> None:
    k = sub.add_parser("keygen", help="write an Ed25519 key pair: PREFIX.key (0600) and PREFIX.pub")
    k.add_argument("prefix", type=Path, help="path prefix of the two files (folders are created)")
    k.add_argument("--force", action="store_true", help="replace existing key files")
    k.set_defaults(func=_keygen)

    t = sub.add_parser("token", help="issue a client/provider/admin token (JWT, EdDSA)")
    t.add_argument("--key", type=Path, required=True, help="token-signing key (ccgw keygen)")
    t.add_argument("--sub", required=True, help="account, e.g. client:alice or provider:acme")
    t.add_argument(
        "--role", required=True, choices=["client", "provider", "admin"], help="what it may do"
    )
    t.add_argument("--ttl-s", type=int, default=86_400, help="lifetime in seconds")
    t.set_defaults(func=_token)

    c = sub.add_parser(
        "dev-certs",
        help="write a development TLS CA and gateway/client certificates to DIR",
        description="ca.crt/ca.key, gateway.crt/gateway.key (SANs: localhost, 127.0.0.1, ::1 and "
        "every --name) and client.crt/client.key. Development only.",
    )
    c.add_argument("dir", type=Path, help="output folder (created)")
    c.add_argument(
        "--name",
        action="append",
        default=[],
        help="another DNS name or IP address the gateway is reached at (repeat)",
    )
    c.add_argument("--force", action="store_true", help="replace existing files")
    c.set_defaults(func=_dev_certs)

    s = sub.add_parser("sim-root", help="create a simulated TEE vendor in DIR (development only)")
    s.add_argument("dir", type=Path, help="output folder: root.pem for verifiers, keys for workers")
    s.set_defaults(func=_sim_root)

    m = sub.add_parser("tiny-model", help="write a tiny random-weight model (HF layout) to DIR")
    m.add_argument("dir", type=Path, help="output folder")
    m.set_defaults(func=_tiny_model)


def _keygen(args: argparse.Namespace) -> int:
    from ccgw.keys import write_keypair

    try:
        priv, pub = write_keypair(args.prefix, force=args.force)
    except FileExistsError as exc:
        raise CliError(f"{exc.filename} already exists (use --force to replace it)") from None
    print(f"wrote {priv} (keep secret) and {pub}")
    return 0


def _token(args: argparse.Namespace) -> int:
    from ccgw.gateway.auth import issue_token

    if args.ttl_s <= 0:
        raise CliError("--ttl-s must be positive")
    key = load_private_key(args.key, "token-signing key")
    print(issue_token(key, sub=args.sub, role=args.role, ttl_s=args.ttl_s))
    return 0


def _dev_certs(args: argparse.Namespace) -> int:
    from ccgw.devcerts import make_dev_certs

    try:
        files = make_dev_certs(args.dir, args.name, force=args.force)
    except FileExistsError as exc:
        raise CliError(f"{exc.args[0]} already exists (use --force to replace it)") from None
    print(f"wrote {', '.join(f.name for f in files)} in {args.dir} (development only)")
    return 0


def _sim_root(args: argparse.Namespace) -> int:
    from ccgw.simtee import SimulatedVendor

    SimulatedVendor.generate().save(args.dir)
    print(
        f"simulated vendor in {args.dir}; give verifiers {args.dir / 'root.pem'} (development only)"
    )
    return 0


def _tiny_model(args: argparse.Namespace) -> int:
    sys.argv = ["ccgw.enclave.engine.tiny", str(args.dir)]
    runpy.run_module("ccgw.enclave.engine.tiny", run_name="__main__")
    return 0
