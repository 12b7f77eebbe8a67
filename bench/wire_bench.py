"""Cost of the confidential wire format on this machine: HPKE seal/open per suite and bucket,
answer chunk seal+open, receipt sign+verify, and evidence verification. Prints a table.

    python bench/wire_bench.py
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccgw.enclave.evidence_bundle import collect_bundle
from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.simtee import SimulatedSnpTee, SimulatedVendor
from ccgw.verify.attestation.bundle import verify_bundle
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.chunks import ChunkOpener, ChunkSealer
from ccgw.verify.hpke import parse_header, seal_request
from ccgw.verify.receipts import verify_receipt
from tests.support.receipts import make_receipt


def per_op_us(fn: Callable[[], object], seconds: float = 0.3) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    keys = Keyring()
    rows: list[tuple[str, str]] = []
    for suite, name in (
        (pb.X25519_SHA256_CHACHA20POLY1305, "X25519"),
        (pb.MLKEM768X25519_SHA256_CHACHA20POLY1305, "ML-KEM-768+X25519"),
    ):
        for size in (100, 60_000):

            def make() -> pb.SealedRequest:
                h = pb.RoutingHeader(
                    job_id=os.urandom(16),
                    model="m",
                    worker_id="w",
                    key_id=keys.key_id,
                    suite=suite,
                    max_input_tokens=1,
                    max_new_tokens=1,
                    account="a",
                )  # type: ignore[arg-type]
                inner = pb.InnerRequest(
                    prompt="x" * size, response_key=os.urandom(32), request_nonce=os.urandom(32)
                )
                return seal_request(h, inner, keys.public)

            s = make()
            h = parse_header(s.header)
            rows.append((f"seal {name}, {size} B prompt", f"{per_op_us(make):9.1f} µs"))
            rows.append(
                (
                    f"open {name}, {size} B prompt",
                    f"{per_op_us(lambda: keys.open_request(s, h)):9.1f} µs",
                )
            )
    key, salt, job = os.urandom(32), os.urandom(32), os.urandom(16)
    piece = b"x" * 64

    def chunk_round() -> None:
        sealer, opener = ChunkSealer(key, salt, job), ChunkOpener(key, salt, job)
        for i in range(100):
            idx, ct = sealer.seal(piece, i == 99)
            opener.open(idx, ct, i == 99)

    rows.append(("seal+open 100 answer chunks (64 B)", f"{per_op_us(chunk_round):9.1f} µs"))
    r = make_receipt(key_id=keys.key_id)
    jws = keys.sign(r)
    rows.append(("sign receipt", f"{per_op_us(lambda: keys.sign(r)):9.1f} µs"))
    rows.append(
        (
            "verify receipt",
            f"{per_op_us(lambda: verify_receipt(jws, keys.public.receipt_ed25519, keys.key_id)):9.1f} µs",
        )
    )
    vendor = SimulatedVendor.generate()
    tee = SimulatedSnpTee(vendor)
    nonce = os.urandom(32)
    bundle = collect_bundle(
        cpu=tee,
        gpu=None,
        keys=keys.public,
        nonce=nonce,
        models={"m": b"\0" * 32},
        issued_at_ms=int(time.time() * 1000),
    )
    roots = RootStore.default().with_simulated(vendor.root_pem())
    policy = Policy().allowing_simulated()
    now = dt.datetime.now(dt.UTC)
    rows.append(
        (
            "collect evidence bundle (simulated SNP)",
            f"{per_op_us(lambda: collect_bundle(cpu=tee, gpu=None, keys=keys.public, nonce=nonce, models={'m': bytes(32)}, issued_at_ms=1)):9.1f} µs",
        )
    )
    rows.append(
        (
            "verify evidence bundle (chain + report + binding)",
            f"{per_op_us(lambda: verify_bundle(bundle, policy, roots, now)):9.1f} µs",
        )
    )
    width = max(len(a) for a, _ in rows)
    print(f"{'operation':<{width}} | {'time/op':>12}")
    print(f"{'-' * width}-|-{'-' * 12}")
    for a, b in rows:
        print(f"{a:<{width}} | {b:>12}")


if __name__ == "__main__":
    main()
