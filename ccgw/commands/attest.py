"""Attestation tooling: derive a policy from known-good evidence."""

from __future__ import annotations

import argparse

from ccgw.commands._common import Subparsers


def register(sub: Subparsers) -> None:
    pol = sub.add_parser(
        "derive-policy",
        help="write a policy that pins a known-good evidence bundle (see `derive-policy -h`)",
        add_help=False,
    )
    pol.add_argument("args", nargs=argparse.REMAINDER)
    pol.set_defaults(func=_derive_policy)


def _derive_policy(args: argparse.Namespace) -> int:
    from ccgw.verify.attestation.derive import cli_derive_policy

    return cli_derive_policy(args.args)
