"""Operator set-up commands: keys, tokens, the simulated vendor, the tiny model."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from ccgw.commands._common import Subparsers


def register(sub: Subparsers) -> None:
    k = sub.add_parser("keygen", help="write an Ed25519 key pair: PREFIX.key (0600) and PREFIX.pub")
    k.add_argument("prefix", type=Path, help="path prefix of the two files")
    k.set_defaults(func=_keygen)

    t = sub.add_parser("token", help="issue a client/provider/admin token (JWT, EdDSA)")
    t.add_argument("--key", type=Path, required=True, help="token-signing key (ccgw keygen)")
    t.add_argument("--sub", required=True, help="account, e.g. client:alice or provider:acme")
    t.add_argument("--role", required=True, choices=["client", "provider", "admin"])
    t.add_argument("--ttl-s", type=int, default=86_400, help="lifetime in seconds")
    t.set_defaults(func=_token)

    s = sub.add_parser("sim-root", help="create a simulated TEE vendor in DIR (development only)")
    s.add_argument("dir", type=Path)
    s.set_defaults(func=_sim_root)

    m = sub.add_parser("tiny-model", help="write a tiny random-weight model (HF layout) to DIR")
    m.add_argument("dir", type=Path)
    m.set_defaults(func=_tiny_model)


def _keygen(args: argparse.Namespace) -> int:
    from ccgw.keys import write_keypair

    priv, pub = write_keypair(args.prefix)
    print(f"wrote {priv} (keep secret) and {pub}")
    return 0


def _token(args: argparse.Namespace) -> int:
    from ccgw.gateway.auth import issue_token
    from ccgw.keys import load_private

    print(issue_token(load_private(args.key), sub=args.sub, role=args.role, ttl_s=args.ttl_s))
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
