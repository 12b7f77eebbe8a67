"""The worker's checks before decryption, its replay guard, and heartbeat telemetry."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from ccgw.enclave.config import WorkerLimits
from ccgw.enclave.errors import Replayed, RequestRejected, TooLarge
from ccgw.enclave.jobs import JobContext, JobRunner, ReplayGuard
from ccgw.enclave.keys import Keyring
from ccgw.enclave.telemetry import Telemetry
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify.hpke import seal_request
from tests.support.fake_engine import EchoEngine

KEYS = Keyring()
CTX = JobContext(worker_id="w-1", evidence_sha256="ab" * 32)


def runner(clock: float | None = None) -> JobRunner:
    now = clock or time.time()
    return JobRunner(KEYS, {"echo": EchoEngine()}, WorkerLimits(), clock=lambda: now)


def sealed(**over: object) -> pb.SealedRequest:
    h = pb.RoutingHeader(
        job_id=os.urandom(16),
        model="echo",
        worker_id="w-1",
        key_id=KEYS.key_id,
        suite=pb.X25519_SHA256_CHACHA20POLY1305,
        max_input_tokens=16,
        max_new_tokens=16,
        issued_at_ms=int(time.time() * 1000),
        account="client:a",
    )
    for k, v in over.items():
        setattr(h, k, v)
    inner = pb.InnerRequest(
        prompt="a b c", response_key=os.urandom(32), request_nonce=os.urandom(32)
    )
    return seal_request(h, inner, KEYS.public)


@pytest.mark.parametrize(
    ("over", "error", "match"),
    [
        ({"worker_id": "w-2"}, RequestRejected, "not addressed"),
        ({"key_id": "0" * 32}, RequestRejected, "not addressed"),
        ({"model": "other"}, RequestRejected, "not served"),
        ({"max_new_tokens": 10_000}, TooLarge, "max_new_tokens"),
        ({"issued_at_ms": 1}, Replayed, "time window"),
    ],
)
def test_checks_before_decryption(
    over: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        runner().check(sealed(**over), CTX)


def test_ciphertext_of_wrong_length_is_refused_before_decryption() -> None:
    s = sealed()
    s.ciphertext = s.ciphertext[:-1]
    with pytest.raises(RequestRejected, match="ciphertext"):
        runner().check(s, CTX)


def test_replay_guard_refuses_repeats_and_stays_bounded() -> None:
    now = [1_000.0]
    g = ReplayGuard(window_s=10, entries_max=3, clock=lambda: now[0])
    g.check_and_add(b"a", 1_000_000)
    with pytest.raises(Replayed, match="already seen"):
        g.check_and_add(b"a", 1_000_000)
    g.check_and_add(b"b", 1_000_000)
    g.check_and_add(b"c", 1_000_000)
    with pytest.raises(Replayed, match="full"):
        g.check_and_add(b"d", 1_000_000)
    now[0] += 25  # older entries expire once they cannot be inside any window
    g.check_and_add(b"d", 1_025_000)
    with pytest.raises(Replayed, match="time window"):
        g.check_and_add(b"a", 1_000_000)  # the expired id is still refused: its time is too old


async def test_run_streams_sealed_chunks_then_a_signed_receipt() -> None:
    r = JobRunner(KEYS, {"echo": EchoEngine()}, WorkerLimits(chunk_tokens_max=1))
    msgs = [m async for m in r.run(sealed(), CTX)]
    assert {m.WhichOneof("msg") for m in msgs} == {"update"}
    updates = [m.update for m in msgs]
    # The start rides on the first chunk; the receipt on the final one (fewer messages per job).
    assert len(updates[0].answer_salt) == 32 and not any(u.answer_salt for u in updates[1:])
    chunks = [c for u in updates for c in u.chunks]
    assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) == 4
    assert [c.final for c in chunks] == [False, False, False, True]
    assert updates[-1].receipt_jws and not any(u.receipt_jws for u in updates[:-1])


def test_heartbeat_says_cpu_only_without_nvml_and_reports_gpus_with_it() -> None:
    hb = Telemetry("cpu").heartbeat(in_flight=2, capacity=8)
    assert (hb.gpu_present, hb.device, hb.in_flight, hb.capacity) == (False, "cpu", 2, 8)
    fake = SimpleNamespace(
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=73),
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=5, total=80),
    )
    hb = Telemetry("cuda:0", nvml=fake).heartbeat(in_flight=0, capacity=8)
    assert (
        hb.gpu_present and hb.gpus[0].utilization_pct == 73 and hb.gpus[0].memory_total_bytes == 80
    )
