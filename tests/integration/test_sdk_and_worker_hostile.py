"""The SDK raises only client.errors whatever a gateway sends; the worker bounds prompt work before
tokenizing and seals what it tells the client; the answer salt is bound into the receipt and
reaches the client before anything is settled."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ccgw.client.audit import LogIdentity
from ccgw.client.errors import (
    AnswerRejected,
    ClientError,
    GatewayMisbehaved,
    GatewayRefused,
    InvalidInput,
    WorkerRefused,
)
from ccgw.client.sdk import Answer, Client
from ccgw.enclave.config import WorkerLimits
from ccgw.gateway.errors import WorkerRejected
from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from tests.integration.test_hostile_gateway import explode, no_reward, setup
from tests.support.cluster import Cluster, cluster
from tests.support.fake_engine import EchoEngine


async def fake_gateway(unary: bytes, stream: list[bytes]) -> tuple[grpc.aio.Server, int]:
    """Answers every Gateway/TransparencyLog call with `unary` bytes, Infer with `stream`."""

    async def u(request: bytes, context: Any) -> bytes:
        return unary

    async def s(request: bytes, context: Any) -> AsyncIterator[bytes]:
        for item in stream:
            yield item

    server = grpc.aio.server()
    handlers = {
        m: grpc.unary_unary_rpc_method_handler(u)
        for m in ("ListWorkers", "ChallengeWorker", "GetReceipt", "GetBalance")
    }
    handlers["Infer"] = grpc.unary_stream_rpc_method_handler(s)
    log = {
        m: grpc.unary_unary_rpc_method_handler(u) for m in ("GetCheckpoint", "GetInclusionProof")
    }
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler("ccgw.v1.Gateway", handlers),
            grpc.method_handlers_generic_handler("ccgw.v1.TransparencyLog", log),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def client_at(c: Cluster, port: int) -> Client:
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    c.channels.append(ch)
    roots = RootStore.default().with_simulated(c.vendor.root_pem())
    policy = dataclasses.replace(Policy().allowing_simulated(), accept_unreleased=True)
    return Client(ch, c.token("client:alice", "client"), policy, roots)


async def test_every_sdk_entry_point_raises_only_client_errors_on_garbage(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await setup(c)
        real = c.client()
        worker = (await real.workers("echo"))[0]
        sealed, inner = real.seal(worker, "echo", prompt="a b")
        answer = await real.complete("echo", prompt="a b")
        recorded = [e.SerializeToString() async for e in _events(c, real, worker)]
        log_id = LogIdentity("ccgw-log", c.gateway.checkpointer.public_raw, "ccgw.local/log")
        streams = {
            "garbage": [b"\xff\xff\xff"],
            "event_after_receipt": [*recorded, recorded[0]],
            "nothing": [],
            "unknown_event": [gpb.InferEvent().SerializeToString()],
        }
        for name, stream in streams.items():
            server, port = await fake_gateway(b"\xff\xff\xff", stream)
            try:
                bad = client_at(c, port)
                calls = {
                    "workers": bad.workers("echo"),
                    "challenge": bad.challenge(worker.worker_id),
                    "balance": bad.balance(),
                    "inclusion": bad.inclusion(answer, log_id),
                    "complete": bad.complete("echo", prompt="a b"),
                    "stream": _drain(bad.stream(worker, sealed, inner, Answer())),
                }
                for what, coro in calls.items():
                    with pytest.raises(ClientError) as err:
                        await coro
                    assert type(err.value) is not ClientError, (name, what)
                    if what in ("workers", "balance", "challenge", "complete"):
                        assert isinstance(err.value, GatewayMisbehaved), (name, what)
            finally:
                await server.stop(0)
        with pytest.raises(InvalidInput):
            Client(c.channels[0], "not-a-jwt", Policy(accept_unreleased=True), RootStore.default())
        with pytest.raises(InvalidInput, match="no release key"):
            Client(c.channels[0], c.token("client:alice", "client"), Policy(), RootStore.default())
        with pytest.raises(InvalidInput):
            real.seal(worker, "echo", prompt="x", messages=[("user", "y")])
        with pytest.raises(InvalidInput):
            real.seal(worker, "echo", prompt="x" * 2_000_000)
        with pytest.raises(InvalidInput):
            await real.inclusion(Answer(), log_id)


async def _events(c: Cluster, client: Client, worker: Any) -> AsyncIterator[gpb.InferEvent]:
    sealed, _ = client.seal(worker, "echo", prompt="a b")
    async for e in c.gateway_router().run("client:alice", sealed):
        yield e


async def _drain(it: AsyncIterator[Any]) -> None:
    async for _ in it:
        pass


async def test_megabyte_prompt_is_refused_before_tokenizing_and_the_reason_is_sealed(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as c:
        engine = await setup(c)
        client = c.client()
        with pytest.raises(WorkerRefused) as err:
            await client.complete("echo", prompt="y" * 1_000_000)
        assert engine.seen_prompts == 0  # never reached the engine (nor its tokenizer)
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # What crossed the gateway says only the code; the count travelled sealed to the client.
        assert "1000000" not in err.value.details and "TOO_LARGE" in err.value.details
        assert err.value.reason is not None and "1000000 characters" in err.value.reason
        assert err.value.reason in str(err.value)
        await no_reward(c)


async def test_refusal_text_never_crosses_the_gateway_in_clear(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await setup(c)
        client = c.client()
        worker = (await client.workers("echo"))[0]
        sealed, _ = client.seal(worker, "echo", prompt="y" * 1_000_000)
        events: list[gpb.InferEvent] = []

        async def relay() -> None:
            async for e in c.gateway_router().run("client:alice", sealed):
                events.append(e)

        with pytest.raises(WorkerRejected, match="sealed") as err:
            await relay()
        assert err.value.failure_code == "TOO_LARGE"
        (failed,) = [e.failed for e in events]
        assert b"1000000" not in failed.SerializeToString()
        assert failed.sealed_detail and len(failed.detail_salt) == 32


async def test_salt_reaches_the_client_before_the_receipt_is_settled(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await setup(c, limits=WorkerLimits(reconnect_attempts_max=1))
        client = c.client()
        worker = (await client.workers("echo"))[0]
        sealed, _ = client.seal(worker, "echo", prompt="a b")
        # The worker sends start, final chunk and receipt in ONE update; the gateway hands the
        # start (and chunk) to the client's stream first, and settles only then.
        before = await c.gateway.store.log_size()
        gen = c.gateway_router().run("client:alice", sealed)
        first = await anext(gen)
        assert first.update.answer_salt and first.update.chunks and not first.update.receipt_jws
        assert await c.gateway.store.log_size() == before  # nothing settled yet
        last = await anext(gen)
        assert last.update.receipt_jws and not last.update.answer_salt
        assert await c.gateway.store.log_size() == before + 1
        await gen.aclose()


async def test_worker_that_sends_no_start_is_never_settled(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        agent = await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 10_000_000)
        real_run = agent._runner.run

        async def no_start(*a: Any) -> AsyncIterator[Any]:
            async for m in real_run(*a):
                if m.WhichOneof("msg") == "update":
                    m.update.ClearField("answer_salt")
                yield m

        agent._runner.run = no_start  # type: ignore[method-assign]
        with pytest.raises(GatewayRefused) as err:
            await c.client().complete("echo", prompt="a b")
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        await no_reward(c)


async def test_swapped_salt_cannot_open_the_answer(tmp_path: Path) -> None:
    from tests.integration.test_hostile_gateway import tamper_events

    async with cluster(tmp_path) as c:
        await setup(c)

        def swap(ev: list[gpb.InferEvent]) -> list[gpb.InferEvent]:
            ev = explode(ev)
            ev[0].started.answer_salt = os.urandom(32)
            return ev

        tamper_events(c, swap)
        with pytest.raises(AnswerRejected, match="authentication"):
            await c.client().complete("echo", prompt="a b")


async def test_answer_event_for_another_job_is_refused(tmp_path: Path) -> None:
    from tests.integration.test_hostile_gateway import tamper_events

    async with cluster(tmp_path) as c:
        await setup(c)

        def other(ev: list[gpb.InferEvent]) -> list[gpb.InferEvent]:
            salt = ev[0].started.answer_salt
            ev[0] = gpb.InferEvent(update=wpb.JobUpdate(job_id=os.urandom(16), answer_salt=salt))
            return ev

        tamper_events(c, other)
        with pytest.raises(AnswerRejected, match="another job"):
            await c.client().complete("echo", prompt="a b")
