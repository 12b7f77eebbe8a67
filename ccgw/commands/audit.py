"""The auditor's command: verify a gateway's log, receipts and ledger from public data.
Exit 0: clean; 1: a discrepancy found; 2: usage error; 3: the gateway is unreachable or
misbehaving (the audit could not finish)."""

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
    channel,
    policy_and_roots,
    read_bytes,
    release_trust,
)


def register(sub: Subparsers) -> None:
    au = sub.add_parser(
        "audit", help="verify a gateway's log, receipts and ledger from public data"
    )
    au.add_argument("--gateway", required=True, help="host:port of the gateway")
    au.add_argument(
        "--state",
        type=Path,
        default=Path("ccgw-audit-state.json"),
        help="where the last verified checkpoint is kept between runs",
    )
    au.add_argument("--policy", type=Path, default=None, help="attestation policy file")
    add_release_trust(au, log_state=False)  # the audit keeps its checkpoint in --state
    next(a for a in au._actions if a.dest == "log_pubkey").required = True
    au.add_argument("--jobs", action="store_true", help="list the release of every job")
    add_simulated_root(au)
    add_tls_ca(au)
    au.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from ccgw.client.audit import Auditor, LogIdentity, format_report

    try:
        pub = load_pem_public_key(read_bytes(args.log_pubkey, "log public key"))
    except ValueError:
        raise CliError(f"{args.log_pubkey} is not a PEM public key") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise CliError("the log key must be Ed25519")
    policy, roots = policy_and_roots(args.policy, args.allow_simulated_tee)
    policy, trust = release_trust(args, policy)

    async def run() -> int:
        async with channel(args.gateway, args.tls_ca) as ch:
            auditor = Auditor(
                ch,
                LogIdentity(args.log_name, pub.public_bytes_raw(), args.log_origin),
                policy,
                roots,
                state_path=args.state,
                release_keys=trust.keys if trust is not None else (),
                accept_unreleased=policy.accept_unreleased,
            )
            try:
                rep = await auditor.run()
            except ValueError as exc:  # the local state file
                raise CliError(str(exc)) from None
        print(format_report(rep, jobs=args.jobs))
        return rep.exit_code

    return asyncio.run(run())
