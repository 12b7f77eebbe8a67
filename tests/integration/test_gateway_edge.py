"""Hostile input at the gateway's edge, tried as an attacker would: bytes that do not parse, fields
out of bounds, a worker stream that misbehaves, quotas. Each is a clear status (never INTERNAL) and
no expected error writes a traceback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog

from ccgw.client.errors import GatewayRefused
from ccgw.gateway.config import GatewayLimits
from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from tests.support.cluster import Cluster, cluster
from tests.support.fake_engine import EchoEngine

GARBAGE = b"\xff\xff\xff\xff"
UNARY = [
    ("ccgw.v1.Gateway", m)
    for m in ("ListWorkers", "ChallengeWorker", "GetReceipt", "GetBalance", "DrainWorker")
] + [
    ("ccgw.v1.TransparencyLog", m)
    for m in ("GetCheckpoint", "GetInclusionProof", "GetConsistencyProof", "GetEntries")
]


def md(c: Cluster, sub: str, role: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {c.token(sub, role)}")]


def no_tracebacks(logs: list[dict[str, Any]]) -> None:
    assert not [e for e in logs if "exc_info" in e or e.get("event") == "internal_error"]


async def test_unparsable_requests_are_invalid_argument_without_traceback(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c, grpc.aio.insecure_channel(c.address) as ch:
        with structlog.testing.capture_logs() as logs:
            for service, method in UNARY:
                call = ch.unary_unary(f"/{service}/{method}")
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(GARBAGE, metadata=md(c, "admin:ops", "admin"))
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            infer = ch.unary_stream("/ccgw.v1.Gateway/Infer")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in infer(GARBAGE, metadata=md(c, "client:a", "client")):
                    pass
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            connect = ch.stream_stream("/ccgw.v1.WorkerLink/Connect")

            async def garbage() -> AsyncIterator[bytes]:
                yield GARBAGE

            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in connect(garbage(), metadata=md(c, "provider:p", "provider")):
                    pass
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        no_tracebacks(logs)


async def test_request_fields_are_bounded_at_the_edge(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        agent = await c.add_worker({"echo": EchoEngine()})
        client = c.client()
        stub, md_ = client._stub, md(c, "client:a", "client")
        cases = [
            (stub.ListWorkers, gpb.ListWorkersRequest(model="m" * 1000)),
            (stub.ListWorkers, gpb.ListWorkersRequest(region="r" * 1000)),
            (stub.GetReceipt, gpb.GetReceiptRequest(job_id=b"abc")),
            (stub.GetReceipt, gpb.GetReceiptRequest(job_id=os.urandom(10_000))),
            (
                stub.ChallengeWorker,
                gpb.ChallengeWorkerRequest(worker_id="w" * 1000, nonce=bytes(32)),
            ),
            (stub.ChallengeWorker, gpb.ChallengeWorkerRequest(worker_id="w", nonce=bytes(5))),
            (stub.DrainWorker, gpb.DrainWorkerRequest(worker_id="")),
        ]
        with structlog.testing.capture_logs() as logs:
            for method, req in cases:
                admin = method == stub.DrainWorker
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await method(req, metadata=md(c, "admin:o", "admin") if admin else md_)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, req
            with pytest.raises(grpc.aio.AioRpcError) as err:  # only operators drain workers
                await stub.DrainWorker(
                    gpb.DrainWorkerRequest(worker_id=agent.worker_id), metadata=md_
                )
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            log = c.client()._log
            for req in (
                lpb.GetEntriesRequest(start=2**63, end=2**64 - 1),
                lpb.GetConsistencyProofRequest(first=2**64 - 1, second=2**64 - 1),
            ):
                method = (
                    log.GetEntries
                    if isinstance(req, lpb.GetEntriesRequest)
                    else log.GetConsistencyProof
                )
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await method(req)
                assert err.value.code() != grpc.StatusCode.INTERNAL
        no_tracebacks(logs)


async def _raw_worker(
    c: Cluster, first: list[bytes], after_admission: bytes | None
) -> grpc.StatusCode:
    """A worker stream written by hand: `first` messages, then (if it gets that far) a real
    admission with the agent's evidence, then `after_admission`."""
    await c.publish(c.release_for({"echo": EchoEngine()}))  # admitted under a release
    from ccgw.enclave.agent import WorkerAgent
    from ccgw.enclave.config import WorkerConfig
    from ccgw.simtee import SimulatedSnpTee

    agent = WorkerAgent(
        WorkerConfig(gateway="", provider_token=c.token("provider:raw", "provider"), models=()),
        {"echo": EchoEngine()},
        SimulatedSnpTee(c.vendor),
    )
    outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
    for m in first:
        outbox.put_nowait(m)

    async def requests() -> AsyncIterator[bytes]:
        while (m := await outbox.get()) is not None:
            yield m

    async with grpc.aio.insecure_channel(c.address) as ch:
        call = ch.stream_stream(
            "/ccgw.v1.WorkerLink/Connect", response_deserializer=wpb.GatewayMessage.FromString
        )(requests(), metadata=md(c, "provider:raw", "provider"))
        try:
            async for gm in call:
                if gm.WhichOneof("msg") == "challenge":
                    bundle = agent._bundle(bytes(gm.challenge.nonce))
                    outbox.put_nowait(wpb.WorkerMessage(evidence=bundle).SerializeToString())
                elif gm.WhichOneof("msg") == "admitted" and after_admission is not None:
                    outbox.put_nowait(after_admission)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        finally:
            outbox.put_nowait(None)
    return grpc.StatusCode.OK


def _msg(**kw: Any) -> bytes:
    return wpb.WorkerMessage(**kw).SerializeToString()


HELLO = _msg(hello=wpb.WorkerHello(models=["echo"], max_concurrent_jobs=4))


@pytest.mark.parametrize(
    ("first", "after"),
    [
        ([_msg(hello=wpb.WorkerHello(models=[], max_concurrent_jobs=1))], None),
        ([_msg(hello=wpb.WorkerHello(models=["m" * 500], max_concurrent_jobs=1))], None),
        (
            [_msg(hello=wpb.WorkerHello(models=["echo"], max_concurrent_jobs=1, region="r" * 500))],
            None,
        ),
        ([_msg(hello=wpb.WorkerHello(models=["echo"], max_concurrent_jobs=0))], None),
        ([_msg(heartbeat=wpb.Heartbeat())], None),
        ([HELLO], GARBAGE),
        ([HELLO], _msg(chunk=wpb.JobChunk(job_id=b"short"))),
        ([HELLO], _msg(update=wpb.JobUpdate(job_id=bytes(16), answer_salt=b"x"))),
        ([HELLO], _msg(update=wpb.JobUpdate(job_id=bytes(16), log_index=5))),
        ([HELLO], _msg(failed=wpb.JobFailed(job_id=bytes(16), message="m" * 5000))),
        ([HELLO], _msg(heartbeat=wpb.Heartbeat(device="d" * 500))),
        ([HELLO], _msg(hello=wpb.WorkerHello(models=["echo"], max_concurrent_jobs=1))),
        ([HELLO], _msg()),
    ],
)
async def test_hostile_worker_stream_is_invalid_argument(
    tmp_path: Path, first: list[bytes], after: bytes | None
) -> None:
    async with cluster(tmp_path) as c:
        with structlog.testing.capture_logs() as logs:
            code = await asyncio.wait_for(_raw_worker(c, first, after), 10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert len(c.gateway.registry) == 0
        no_tracebacks(logs)


async def test_job_and_challenge_quotas_are_resource_exhausted(tmp_path: Path) -> None:
    limits = GatewayLimits(
        account_jobs_per_s=0.001,
        account_jobs_burst=2,
        account_challenges_per_s=0.001,
        account_challenges_burst=1,
    )
    async with cluster(tmp_path, limits=limits) as c:
        agent = await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 1_000_000)
        client = c.client()
        for _ in range(2):
            await client.complete("echo", prompt="a b")
        with pytest.raises(GatewayRefused) as err:
            await client.complete("echo", prompt="a b")
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate" in err.value.details
        await c.deposit("client:bob", 1_000_000)
        await c.client("client:bob").complete("echo", prompt="a b")  # another account's bucket
        await client.challenge(agent.worker_id or "")
        with pytest.raises(GatewayRefused) as err:
            await client.challenge(agent.worker_id or "")
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Refused jobs held nothing: alice paid exactly for her two answers.
        paid = 1_000_000 - (await c.gateway.store.balance("client:alice"))[0]
        assert paid > 0 and (await c.gateway.store.balance("client:alice"))[1] == 0


async def test_settled_job_runs_no_void_and_a_failed_one_voids_once(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 1_000_000)
        voids: list[bytes] = []
        store = c.gateway.store
        real = store.void

        async def counting(job_id: bytes) -> None:
            voids.append(job_id)
            await real(job_id)

        store.void = counting  # type: ignore[method-assign]
        await c.client().complete("echo", prompt="a b c")
        assert voids == []
        with pytest.raises(GatewayRefused):
            await c.client().complete("echo", prompt="w " * 5000, max_new_tokens=1)
        assert len(voids) == 1
