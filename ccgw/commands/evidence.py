"""`ccgw evidence`: save a worker's evidence bundle (binary EvidenceBundle) for `derive-policy`.

From a gateway: the evidence a worker was admitted with, or fresh evidence for our own nonce
(--challenge). On the worker's own machine (--local): evidence collected right here, with
throwaway keys (what a policy pins — measurements, TCB, GPU — is the same). Nothing here trusts the
bundle: `ccgw derive-policy` verifies it before pinning anything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

from ccgw.commands._common import (
    CliError,
    Subparsers,
    add_tls_ca,
    channel,
    read_token,
    warn,
)
from ccgw.commands.doctor import parse_model


def register(sub: Subparsers) -> None:
    e = sub.add_parser(
        "evidence",
        help="save a worker's evidence bundle (for derive-policy)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("-o", "--output", type=Path, required=True, help="file to write the bundle to")
    e.add_argument("--gateway", default=None, help="host:port of the gateway to fetch it from")
    e.add_argument("--token-file", type=Path, default=None, help="client or admin token")
    e.add_argument(
        "--worker", default=None, help="worker id (see `ccgw workers`); optional when one is listed"
    )
    e.add_argument(
        "--challenge", action="store_true", help="ask the worker for fresh evidence (our nonce)"
    )
    add_tls_ca(e)
    e.add_argument("--local", action="store_true", help="collect on this machine instead")
    e.add_argument(
        "--simulated-tee",
        type=Path,
        metavar="VENDOR_DIR",
        default=None,
        help="with --local: the SIMULATED TEE from `ccgw sim-root` (development only)",
    )
    e.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=DIR[@SHA256]",
        help="with --local: a model to name in the evidence (its digest is computed)",
    )
    e.add_argument("--device", default="cuda", help="with --local: `cpu` collects no GPU evidence")
    e.set_defaults(func=_evidence, default_log_level="WARNING")


def _evidence(args: argparse.Namespace) -> int:
    if args.local == bool(args.gateway):
        raise CliError("give either --gateway (with --token-file and --worker) or --local")
    bundle = _local(args) if args.local else asyncio.run(_remote(args))
    raw = bundle.SerializeToString()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(raw)
    from ccgw.verify.binding import evidence_sha256

    print(
        f"wrote {args.output} ({len(raw)} bytes, evidence {evidence_sha256(bundle)}); "
        f"next: ccgw derive-policy {args.output} -o policy.toml"
    )
    return 0


async def _remote(args: argparse.Namespace) -> Any:
    from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
    from ccgw.protos.ccgw.v1 import gateway_pb2_grpc as ggrpc

    if args.token_file is None:
        raise CliError("--gateway needs --token-file")
    token = read_token(args.token_file, "client", "admin")
    md = [("authorization", f"Bearer {token}")]
    async with channel(args.gateway, args.tls_ca) as ch:
        stub = ggrpc.GatewayStub(ch)
        listed = await stub.ListWorkers(gpb.ListWorkersRequest(), metadata=md, timeout=30)
        ids = [w.worker_id for w in listed.workers]
        wid = args.worker or (ids[0] if len(ids) == 1 else None)
        if wid is None or wid not in ids:
            raise CliError(
                f"name a worker with --worker (the gateway lists: {', '.join(ids) or 'none'})"
            )
        if args.challenge:
            req = gpb.ChallengeWorkerRequest(worker_id=wid, nonce=os.urandom(32))
            resp = await stub.ChallengeWorker(req, metadata=md, timeout=60)
            return resp.evidence
    return next(w.evidence for w in listed.workers if w.worker_id == wid)


def _local(args: argparse.Namespace) -> Any:
    from ccgw.enclave.evidence_bundle import collect_bundle
    from ccgw.enclave.keys import Keyring
    from ccgw.enclave.tee import CpuTee, GpuAttester
    from ccgw.verify.digests import model_dir_sha256

    models = {}
    for spec in args.model:
        name, path, _ = parse_model(spec)
        models[name] = model_dir_sha256(path)
    cpu: CpuTee
    gpu: GpuAttester | None
    if args.simulated_tee is not None:
        from ccgw.simtee import SimulatedSnpTee, SimulatedVendor

        warn("collecting evidence from the SIMULATED TEE: no hardware protection")
        cpu, gpu = SimulatedSnpTee(SimulatedVendor.load(args.simulated_tee)), None
    else:
        from ccgw.enclave.evidence import detect_real_tee

        cpu, gpu = detect_real_tee(require_gpu=args.device != "cpu")
    return collect_bundle(
        cpu=cpu,
        gpu=gpu,
        keys=Keyring().public,
        nonce=os.urandom(32),
        models=models,
        issued_at_ms=int(time.time() * 1000),
    )
