"""`ccgw canary` and `ccgw dispute` (ADR 14): spot checks of answers by scoring, and disputes.

canary   The auditor's side: jobs through the normal gateway from an ordinary client account (its
         token), with prompts the auditor chose, at a configurable rate, through the same SDK as
         every client (so the same padding buckets), with decoding parameters drawn from a
         distribution file shaped like normal traffic. Each answer is scored by the auditor's own
         engine over its copy of the pinned weights (one teacher-forced pass). Every canary is
         kept in --out as a dispute-evidence file (prompt, answer, receipt, salt, verdict): the
         auditor's own prompts, the one place prompts are kept. With --dispute, inconsistent ones
         are filed at once.
dispute  Files one evidence file (from `ccgw canary`, or a client's own job) with a gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any

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
    read_bytes,
    read_token,
    release_trust,
)

DEFAULT_PROMPTS = (
    "Summarise the water cycle in two sentences.",
    "Translate 'good morning' into French, Spanish and German.",
    "Write a haiku about autumn leaves.",
    "What is the derivative of x squared?",
    "List three prime numbers greater than fifty.",
    "Explain what a hash function is to a child.",
)
# Decoding parameters of canaries: drawn per job with these weights. Replace with the observed
# distribution of normal traffic (--params) so canaries do not stand out.
DEFAULT_PARAMS = (
    {"weight": 6, "temperature": 0.0, "max_new_tokens": 64},
    {"weight": 2, "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 64},
    {"weight": 1, "temperature": 1.0, "top_k": 40, "seed": 0, "max_new_tokens": 128},
)
_PARAM_KEYS = {"weight", "temperature", "top_p", "top_k", "seed", "max_new_tokens", "stop"}


def register(sub: Subparsers) -> None:
    c = sub.add_parser(
        "canary",
        help="auditor: run canary jobs through a gateway and spot-check each answer by scoring",
    )
    c.add_argument("--gateway", required=True, help="host:port of the gateway")
    c.add_argument(
        "--token-file", type=Path, required=True, help="an ordinary client token (ccgw token)"
    )
    c.add_argument("--model", required=True, help="model name the workers serve")
    c.add_argument(
        "--model-dir",
        type=Path,
        required=True,
        help="the auditor's copy of the pinned weights (checked against each receipt's digest)",
    )
    c.add_argument("--out", type=Path, required=True, help="keep every canary's evidence here")
    c.add_argument("--count", type=int, default=10, help="canary jobs to run")
    c.add_argument(
        "--rate-per-s",
        type=float,
        default=0.2,
        help="mean canaries per second (exponential gaps, like independent clients)",
    )
    c.add_argument("--prompts", type=Path, default=None, help="one prompt per line (yours)")
    c.add_argument(
        "--params",
        type=Path,
        default=None,
        help="JSON list of weighted decoding parameters, shaped like normal traffic",
    )
    c.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="dtype of the auditor's scoring engine",
    )
    c.add_argument(
        "--logit-margin",
        type=float,
        default=None,
        help="tolerance in logits (default: by the worker's and verifier's dtypes, ADR 14)",
    )
    c.add_argument("--seed", type=int, default=None, help="seed of the canary schedule")
    c.add_argument(
        "--dispute", action="store_true", help="file a dispute for every inconsistent canary"
    )
    c.add_argument("--policy", type=Path, default=None, help="attestation policy file")
    add_simulated_root(c)
    add_tls_ca(c)
    add_release_trust(c)
    c.set_defaults(func=_canary, default_log_level="WARNING")

    d = sub.add_parser("dispute", help="file a dispute (evidence from ccgw canary) with a gateway")
    d.add_argument("file", type=Path, help="dispute evidence (JSON)")
    d.add_argument("--gateway", required=True, help="host:port of the gateway")
    d.add_argument(
        "--token-file", type=Path, required=True, help="token of the job's account (or admin)"
    )
    d.add_argument("--policy", type=Path, default=None, help="attestation policy file")
    add_simulated_root(d)
    add_tls_ca(d)
    add_release_trust(d)
    d.set_defaults(func=_dispute, default_log_level="WARNING")


def _params(path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        return [dict(p) for p in DEFAULT_PARAMS]
    try:
        items = json.loads(read_bytes(path, "parameters file"))
    except ValueError:
        raise CliError(f"parameters file {path} is not JSON") from None
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(i, dict) and set(i) <= _PARAM_KEYS for i in items)
    ):
        raise CliError(f"parameters file {path} must list objects with keys {sorted(_PARAM_KEYS)}")
    return items


def _prompts(path: Path | None) -> list[str]:
    if path is None:
        return list(DEFAULT_PROMPTS)
    lines = [ln for ln in read_bytes(path, "prompts file").decode().splitlines() if ln.strip()]
    if not lines:
        raise CliError(f"prompts file {path} has no prompt")
    return lines


def _canary(args: argparse.Namespace) -> int:
    from ccgw.client.sdk import Client, evidence_for
    from ccgw.verify.consistency import INCONSISTENT, Tolerance, tolerance_for

    if args.count < 1 or args.rate_per_s <= 0:
        raise CliError("--count must be >= 1 and --rate-per-s > 0")
    token = read_token(args.token_file, "client")
    policy, roots = policy_and_roots(args.policy, args.allow_simulated_tee)
    policy, trust = release_trust(args, policy)
    prompts, params = _prompts(args.prompts), _params(args.params)
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        from ccgw.enclave.engine import EngineLimits, load_engine
        from ccgw.protos.ccgw.v1 import common_pb2 as cpb
    except ModuleNotFoundError as exc:
        raise CliError(
            f"ccgw canary scores with torch: {exc} (pip install 'ccgw[worker]')"
        ) from None
    engine = load_engine(
        args.model_dir, args.model, dtype=args.dtype, limits=EngineLimits(batch_size_max=1)
    )
    verifier = {"engine_version": engine.engine_version, "dtype": engine.dtype, "device": "cpu"}
    weights = [float(p.get("weight", 1)) for p in params]

    async def run() -> int:
        bad = 0
        async with channel(args.gateway, args.tls_ca) as ch:
            client = Client(ch, token, policy, roots, releases=trust)
            for i in range(args.count):
                if i:
                    await asyncio.sleep(rng.expovariate(args.rate_per_s))
                p = rng.choices(params, weights)[0]
                sampling = cpb.SamplingParams(
                    temperature=float(p.get("temperature", 0.0)),
                    top_p=float(p.get("top_p", 0.0)),
                    top_k=int(p.get("top_k", 0)),
                    stop=list(p.get("stop", [])),
                )
                if "seed" in p:
                    sampling.seed = rng.getrandbits(63)
                answer = await client.complete(
                    args.model,
                    prompt=rng.choice(prompts),
                    max_new_tokens=int(p.get("max_new_tokens", 64)),
                    sampling=sampling,
                )
                r = answer.receipt
                assert r is not None
                assert answer.job_input is not None
                if r.model_digest != engine.model_sha256.hex():
                    raise CliError(
                        f"--model-dir holds other weights ({engine.model_sha256.hex()[:16]}…) "
                        f"than the receipt names ({r.model_digest[:16]}…)"
                    )
                tol = (
                    tolerance_for(r.dtype, engine.dtype)
                    if args.logit_margin is None
                    else Tolerance(logit_margin=args.logit_margin)
                )
                t0 = time.perf_counter()
                v, _ = await engine.score(
                    answer.job_input, answer.text, answer.finish_reason, r.output_tokens, tol
                )
                ms = (time.perf_counter() - t0) * 1000
                ev = evidence_for(answer, v, tol, verifier)
                path = args.out / f"canary-{r.job_id}.json"
                path.write_bytes(ev.to_json())
                line = f"{r.job_id} worker {r.worker_id} {v.status} ({ms:.1f} ms)"
                if v.status == INCONSISTENT:
                    bad += 1
                    line += f" at token {v.position}: {v.reason}"
                    if args.dispute:
                        resp = await client.dispute(ev.to_json())
                        line += f" -> dispute {resp.outcome} at log index {resp.log_index}"
                print(line, flush=True)
        print(f"{args.count} canaries, {bad} inconsistent; evidence in {args.out}")
        return EXIT_CHECK_FAILED if bad else EXIT_OK

    try:
        return asyncio.run(run())
    finally:
        asyncio.run(engine.aclose())


def _dispute(args: argparse.Namespace) -> int:
    from ccgw.client.errors import GatewayRefused
    from ccgw.client.sdk import Client
    from ccgw.verify.disputes import Evidence
    from ccgw.verify.errors import DisputeError

    raw = read_bytes(args.file, "dispute")
    try:
        Evidence.from_json(raw)
    except DisputeError as exc:
        raise CliError(f"{args.file}: {exc}") from None
    token = read_token(args.token_file, "client", "admin")
    policy, roots = policy_and_roots(args.policy, args.allow_simulated_tee)
    if args.release_key is not None or args.accept_unreleased_software:
        policy, trust = release_trust(args, policy)
    else:  # filing trusts no worker (the gateway checks the evidence), so no release is needed
        policy, trust = dataclasses.replace(policy, accept_unreleased=True), None

    async def run() -> int:
        async with channel(args.gateway, args.tls_ca) as ch:
            try:
                resp = await Client(ch, token, policy, roots, releases=trust).dispute(raw)
            except GatewayRefused as exc:
                if exc.code.name in ("FAILED_PRECONDITION", "PERMISSION_DENIED", "NOT_FOUND"):
                    raise CliError(f"dispute refused: {exc.details}", EXIT_CHECK_FAILED) from None
                raise
        again = " (already logged)" if resp.already_logged else ""
        print(
            f"dispute logged at index {resp.log_index}{again}: {resp.outcome}, worker "
            f"{resp.worker_id}, token {resp.position}: {resp.reason}"
        )
        if resp.outcome == "reproduced":
            print(f"reward reversed; worker {resp.worker_id} suspended from routing")
        else:
            print("claimed only: the gateway has no verifier for these weights; no money moved")
        return EXIT_OK

    return asyncio.run(run())
