"""What an app runs: one prompt through a gateway, verified end to end."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ccgw.commands._common import (
    EXIT_CHECK_FAILED,
    CliError,
    Subparsers,
    add_release_trust,
    add_simulated_root,
    add_tls_ca,
    channel,
    policy_and_roots,
    read_token,
    release_trust,
)


def register(sub: Subparsers) -> None:
    a = sub.add_parser("ask", help="send one prompt through a gateway, verified end to end")
    a.add_argument("--gateway", required=True, help="host:port of the gateway")
    a.add_argument("--token-file", type=Path, required=True, help="client token (ccgw token)")
    a.add_argument("--model", required=True, help="model name the workers serve")
    a.add_argument("--prompt", required=True, help="the prompt (sealed to the attested worker)")
    a.add_argument("--max-new-tokens", type=int, default=64, help="answer length limit, in tokens")
    a.add_argument("--post-quantum", action="store_true", help="seal with ML-KEM-768+X25519")
    add_simulated_root(a)
    add_tls_ca(a)
    a.add_argument("--policy", type=Path, default=None, help="attestation policy file")
    add_release_trust(a)
    a.add_argument(
        "--report",
        action="store_true",
        help="also print the attestation report of the worker that answered (with the receipt)",
    )
    a.set_defaults(func=_ask, default_log_level="WARNING")

    w = sub.add_parser(
        "workers",
        help="list a gateway's workers and whether each passes YOUR policy (optionally wait)",
    )
    w.add_argument("--gateway", required=True, help="host:port of the gateway")
    w.add_argument("--token-file", type=Path, required=True, help="client token (ccgw token)")
    w.add_argument("--model", default="", help="only workers serving this model")
    w.add_argument(
        "--wait-s",
        type=float,
        default=0.0,
        help="wait up to this long for a verified worker (and for the gateway to come up)",
    )
    w.add_argument("--policy", type=Path, default=None, help="attestation policy file")
    add_release_trust(w)
    add_simulated_root(w)
    add_tls_ca(w)
    w.set_defaults(func=_workers, default_log_level="WARNING")


def _ask(args: argparse.Namespace) -> int:
    from ccgw.client.sdk import Client
    from ccgw.protos.ccgw.v1 import common_pb2 as cpb

    token = read_token(args.token_file, "client")
    policy, roots = policy_and_roots(args.policy, args.allow_simulated_tee)
    policy, trust = release_trust(args, policy)

    async def run() -> int:
        async with channel(args.gateway, args.tls_ca) as ch:
            client = Client(ch, token, policy, roots, releases=trust)
            suite = (
                cpb.MLKEM768X25519_SHA256_CHACHA20POLY1305
                if args.post_quantum
                else cpb.X25519_SHA256_CHACHA20POLY1305
            )
            answer = await client.complete(
                args.model, prompt=args.prompt, max_new_tokens=args.max_new_tokens, suite=suite
            )
        print(answer.text)
        r = answer.receipt
        if r is not None:
            print(
                f"receipt: VERIFIED (worker {r.worker_id}, {r.input_tokens}+{r.output_tokens} "
                f"tokens, log index {answer.log_index})"
            )
        if args.report and answer.report is not None:
            print(answer.report.render(title=f"worker {answer.worker_id}"))
        return 0

    return asyncio.run(run())


def _workers(args: argparse.Namespace) -> int:
    import time

    from ccgw.client.errors import GatewayRefused
    from ccgw.client.sdk import Client

    token = read_token(args.token_file, "client", "admin")
    policy, roots = policy_and_roots(args.policy, args.allow_simulated_tee)
    policy, trust = release_trust(args, policy)
    deadline = time.monotonic() + max(0.0, args.wait_s)

    async def run() -> int:
        async with channel(args.gateway, args.tls_ca) as ch:
            client = Client(ch, token, policy, roots, releases=trust)
            while True:
                try:
                    trusted = await client.workers(args.model)
                except GatewayRefused:
                    if time.monotonic() >= deadline:
                        raise
                    trusted = []
                if trusted or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.5)
        for t in trusted:
            v = t.verified
            sim = " SIMULATED (no hardware protection)" if v.simulated else ""
            rel = (
                f" release={v.release}"
                if v.release
                else " release=NOT CHECKED (--accept-unreleased-software)"
                if policy.accept_unreleased
                else ""
            )
            print(
                f"VERIFIED {t.worker_id} {v.platform} models={','.join(sorted(v.models))} "
                f"in_flight={t.in_flight}/{t.capacity}{sim}{rel}"
            )
        for wid, why in sorted(client.rejected.items()):
            print(f"REFUSED  {wid} {why}")
        if not trusted:
            what = f" for model {args.model!r}" if args.model else ""
            raise CliError(f"no worker{what} passes your policy", EXIT_CHECK_FAILED)
        return 0

    return asyncio.run(run())
