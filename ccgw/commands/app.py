"""What an app runs: one prompt through a gateway, verified end to end."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ccgw.commands._common import (
    Subparsers,
    add_simulated_root,
    add_tls_ca,
    channel,
    policy_and_roots,
    read_token,
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
    a.set_defaults(func=_ask, default_log_level="WARNING")


def _ask(args: argparse.Namespace) -> int:
    from ccgw.client.sdk import Client
    from ccgw.protos.ccgw.v1 import common_pb2 as cpb

    token = read_token(args.token_file, "client")
    policy, roots = policy_and_roots(args.policy, args.allow_simulated_tee)

    async def run() -> int:
        async with channel(args.gateway, args.tls_ca) as ch:
            client = Client(ch, token, policy, roots)
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
        return 0

    return asyncio.run(run())
