"""`ccgw verify`: what a client verifies about the workers serving a model, check by check.

For every worker the gateway lists for the model, the client's own verification runs (its policy,
its pinned roots, the gateway's collateral cache plus any given with --collateral-dir) and the
attestation report is printed, grouped in tiers with a score (or as JSON with --json). With
--challenge each trusted worker is asked for fresh evidence over the client's own nonce first.
Exit 1 when any listed worker's report refuses (an enforced check failed or was skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from pathlib import Path

from ccgw.commands._common import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    CliError,
    Subparsers,
    add_release_trust,
    add_simulated_root,
    add_tls_ca,
    channel,
    policy_and_roots,
    read_text,
    release_trust,
)


def register(sub: Subparsers) -> None:
    v = sub.add_parser("verify", help="verify the workers serving a model and print the reports")
    v.add_argument("--gateway", required=True, help="host:port of the gateway")
    v.add_argument("--token-file", type=Path, required=True, help="client token (ccgw token)")
    v.add_argument("--model", required=True, help="model name the workers serve")
    v.add_argument("--policy", type=Path, default=None, help="attestation policy file")
    add_release_trust(v)
    v.add_argument(
        "--collateral-dir", type=Path, default=None, help="CRLs / Intel TCB info to use as well"
    )
    v.add_argument("--challenge", action="store_true", help="ask for fresh evidence (own nonce)")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    add_simulated_root(v)
    add_tls_ca(v)
    v.set_defaults(func=_verify, default_log_level="WARNING")


def _verify(args: argparse.Namespace) -> int:
    from ccgw.client.sdk import Client
    from ccgw.verify.attestation.report import AttestationReport
    from ccgw.verify.attestation.supplied import load_collateral_dir
    from ccgw.verify.errors import VerifyError

    policy, roots = policy_and_roots(args.policy, args.allow_simulated_tee)
    policy, trust = release_trust(args, policy)
    if args.collateral_dir is not None:
        extra = load_collateral_dir(args.collateral_dir)
        policy = dataclasses.replace(policy, collateral=policy.collateral.merged(extra))
    token = read_text(args.token_file, "client token")

    async def run() -> dict[str, AttestationReport]:
        async with channel(args.gateway, args.tls_ca) as ch:
            client = Client(ch, token, policy, roots, releases=trust)
            trusted = await client.workers(args.model)
            if args.challenge:
                for w in trusted:
                    try:
                        v = await client.challenge(w.worker_id)
                        if v.report is not None:
                            client.reports[w.worker_id] = v.report
                    except VerifyError as exc:
                        if isinstance(exc.report, AttestationReport):
                            client.reports[w.worker_id] = exc.report
            return dict(client.reports)

    reports = asyncio.run(run())
    if not reports:
        raise CliError(f"the gateway lists no worker for {args.model!r}", EXIT_CHECK_FAILED)
    refused = [wid for wid, r in reports.items() if not r.trusted]
    if args.json:
        out = {
            "model": args.model,
            "trusted": not refused,
            "workers": [{"worker_id": wid, **r.to_dict()} for wid, r in sorted(reports.items())],
        }
        print(json.dumps(out, indent=2))
    else:
        for wid, r in sorted(reports.items()):
            print(r.render(title=f"worker {wid}"))
        print(f"{len(reports) - len(refused)} of {len(reports)} worker(s) trusted")
    return EXIT_CHECK_FAILED if refused else EXIT_OK
