"""A gateway that tampers with what it routes is detected by the worker or the client; no wrong
plaintext is ever returned and no reward is paid without a valid receipt."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.client.errors import AnswerRejected, GatewayRefused
from ccgw.enclave.config import WorkerLimits
from ccgw.gateway.registry import JobChannel
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.verify.receipts import RECEIPT_TYP, Receipt
from tests.support.cluster import Cluster, cluster
from tests.support.fake_engine import EchoEngine

PROMPT = "alpha beta gamma delta epsilon"
ONE_TOKEN_CHUNKS = WorkerLimits(reconnect_attempts_max=1, chunk_tokens_max=1)


def tamper_outbound(c: Cluster, mutate: Callable[[cpb.SealedRequest], None]) -> None:
    """Make the gateway alter every sealed request before forwarding it to a worker."""
    for session in c.gateway.registry.serving(""):
        original = session.send

        def send(msg: wpb.GatewayMessage, _orig=original) -> None:  # type: ignore[no-untyped-def]
            if msg.WhichOneof("msg") == "job":
                mutate(msg.job.request)
            _orig(msg)

        session.send = send  # type: ignore[method-assign]


def explode(events: list[gpb.InferEvent]) -> list[gpb.InferEvent]:
    """The same events one per message (JobUpdate -> started, chunk..., receipt), which the
    client accepts too: edits can then drop or move single chunks."""
    out = []
    for e in events:
        if e.WhichOneof("event") != "update":
            out.append(e)
            continue
        u = e.update
        if u.answer_salt:
            out.append(
                gpb.InferEvent(started=wpb.JobStarted(job_id=u.job_id, answer_salt=u.answer_salt))
            )
        out.extend(gpb.InferEvent(chunk=c) for c in u.chunks)
        if u.receipt_jws:
            out.append(
                gpb.InferEvent(
                    receipt=gpb.ReceiptEnvelope(jws=u.receipt_jws, log_index=u.log_index)
                )
            )
    return out


def tamper_events(
    c: Cluster,
    edit: Callable[[list[gpb.InferEvent]], list[gpb.InferEvent]],
) -> None:
    """Make the gateway buffer a job's events and deliver an edited list to the client."""
    router = c.gateway_router()
    original = router.run

    async def run(account: str, sealed: cpb.SealedRequest) -> AsyncIterator[gpb.InferEvent]:
        events = explode([e async for e in original(account, sealed)])
        for e in edit(events):
            yield e

    router.run = run  # type: ignore[method-assign]


async def setup(
    c: Cluster, engine: EchoEngine | None = None, limits: WorkerLimits = ONE_TOKEN_CHUNKS
) -> EchoEngine:
    engine = engine or EchoEngine()
    await c.add_worker({"echo": engine}, limits=limits)
    await c.deposit("client:alice", 10_000_000)
    return engine


async def no_reward(c: Cluster) -> None:
    assert await c.gateway.store.balance("provider:p1") == (0, 0)
    assert await c.gateway.store.balance("client:alice") == (10_000_000, 0)


async def test_flipped_ciphertext_byte_is_refused_by_worker(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        engine = await setup(c)

        def flip(req: cpb.SealedRequest) -> None:
            ct = bytearray(req.ciphertext)
            ct[len(ct) // 2] ^= 1
            req.ciphertext = bytes(ct)

        tamper_outbound(c, flip)
        with pytest.raises(GatewayRefused) as err:
            await c.client().complete("echo", prompt=PROMPT)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "does not open" in err.value.details
        assert engine.seen_prompts == 0
        await no_reward(c)


async def test_swapped_routing_header_is_refused_by_worker(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        engine = await setup(c)

        def swap(req: cpb.SealedRequest) -> None:
            h = cpb.RoutingHeader.FromString(req.header)
            h.max_new_tokens += 1  # e.g. to bill more; still a valid header
            req.header = h.SerializeToString()

        tamper_outbound(c, swap)
        with pytest.raises(GatewayRefused) as err:
            await c.client().complete("echo", prompt=PROMPT)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert engine.seen_prompts == 0
        await no_reward(c)


async def test_replayed_request_is_refused_by_worker(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        engine = await setup(c)
        client = c.client()
        worker = (await client.workers("echo"))[0]
        sealed, inner = client.seal(worker, "echo", prompt=PROMPT)
        from ccgw.client.sdk import Answer

        answer = Answer()
        async for _ in client.stream(worker, sealed, inner, answer):
            pass
        assert engine.seen_prompts == 1
        # The gateway replays the recorded sealed request straight to the worker, once the first
        # run has finished on both sides.
        session = c.gateway.registry.get(worker.worker_id)
        job_id = cpb.RoutingHeader.FromString(sealed.header).job_id
        agent = c.workers[0]
        for _ in range(200):
            if job_id not in session.jobs and not agent._tasks:
                break
            await asyncio.sleep(0.01)
        channel = JobChannel(job_id=job_id, events=asyncio.Queue())
        session.jobs[job_id] = channel
        session.send(wpb.GatewayMessage(job=wpb.Job(request=sealed)))
        msg = await asyncio.wait_for(channel.events.get(), 5)
        assert msg.WhichOneof("msg") == "failed"
        assert msg.failed.code == wpb.REPLAYED
        assert engine.seen_prompts == 1


@pytest.mark.parametrize(
    ("name", "edit", "expected"),
    [
        (
            "drop",
            lambda ev: [e for e in ev if not (e.HasField("chunk") and e.chunk.index == 1)],
            "expected",
        ),
        ("reorder", lambda ev: [ev[0], ev[2], ev[1], *ev[3:]], "expected"),
        ("duplicate", lambda ev: [ev[0], ev[1], ev[1], *ev[2:]], "expected"),
        (
            "truncate",
            lambda ev: [e for e in ev if not (e.HasField("chunk") and e.chunk.final)],
            "truncated",
        ),
        ("cut_stream", lambda ev: ev[:3], "truncated"),
        ("no_receipt", lambda ev: ev[:-1], "without a receipt"),
        ("mark_final_early", None, "fails authentication"),
    ],
)
async def test_chunk_tampering_is_detected_by_client(
    tmp_path: Path, name: str, edit, expected: str
) -> None:  # type: ignore[no-untyped-def]
    def mark_final(ev: list[gpb.InferEvent]) -> list[gpb.InferEvent]:
        ev[2].chunk.final = True
        return ev

    async with cluster(tmp_path) as c:
        await setup(c)
        tamper_events(c, edit or mark_final)
        with pytest.raises(AnswerRejected, match=expected):
            await c.client().complete("echo", prompt=PROMPT)


async def test_answer_opens_only_with_the_clients_response_key(tmp_path: Path) -> None:
    from ccgw.verify.chunks import ChunkOpener
    from ccgw.verify.errors import DecryptError

    async with cluster(tmp_path) as c:
        await setup(c)
        client = c.client()
        worker = (await client.workers("echo"))[0]
        sealed, inner = client.seal(worker, "echo", prompt=PROMPT)
        events = explode([e async for e in c.gateway_router().run("client:alice", sealed)])
        salt = events[0].started.answer_salt
        job_id = cpb.RoutingHeader.FromString(sealed.header).job_id
        first = events[1].chunk
        right = ChunkOpener(inner.response_key, salt, job_id).open(
            first.index, first.ciphertext, first.final
        )
        assert cpb.AnswerPiece.FromString(right).text == "epsilon "
        with pytest.raises(DecryptError):
            ChunkOpener(b"\x00" * 32, salt, job_id).open(first.index, first.ciphertext, first.final)


def _forge_other_key(jws: str) -> str:
    header, payload, _ = jws.split(".")
    other = Ed25519PrivateKey.generate()
    return jwt.api_jws.encode(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)),
        other,
        algorithm="EdDSA",
        headers=json.loads(base64.urlsafe_b64decode(header + "==")),
    )


def _alter_claim(jws: str) -> str:
    header, payload, sig = jws.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["output_tokens"] += 100
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{sig}"


def _alg_none(jws: str) -> str:
    _, payload, _ = jws.split(".")
    h = (
        base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": RECEIPT_TYP}).encode())
        .rstrip(b"=")
        .decode()
    )
    return f"{h}.{payload}."


FORGERIES = {"other_key": _forge_other_key, "altered_claim": _alter_claim, "alg_none": _alg_none}


@pytest.mark.parametrize("forgery", [*FORGERIES, "hs256_public_key"])
async def test_forged_receipt_from_worker_is_refused_and_earns_nothing(
    tmp_path: Path, forgery: str
) -> None:
    async with cluster(tmp_path) as c:
        agent = await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 10_000_000)
        real_sign = agent.keys.sign

        def forged(receipt: Receipt) -> str:
            jws = real_sign(receipt)
            if forgery == "hs256_public_key":
                secret = agent.keys.public.receipt_ed25519
                return jwt.api_jws.encode(
                    receipt.to_json(),
                    secret,
                    algorithm="HS256",
                    headers={"typ": RECEIPT_TYP, "kid": agent.keys.key_id},
                )
            return FORGERIES[forgery](jws)

        object.__setattr__(agent._runner, "_keys", _SigningProxy(agent.keys, forged))
        with pytest.raises(GatewayRefused) as err:
            await c.client().complete("echo", prompt=PROMPT)
        assert err.value.code == grpc.StatusCode.DATA_LOSS
        await no_reward(c)


class _SigningProxy:
    def __init__(self, keys, sign) -> None:  # type: ignore[no-untyped-def]
        self._keys, self.sign = keys, sign

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._keys, name)


@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_forged_receipt_from_gateway_is_refused_by_client(
    tmp_path: Path, forgery: str
) -> None:
    async with cluster(tmp_path) as c:
        await setup(c)

        def edit(ev: list[gpb.InferEvent]) -> list[gpb.InferEvent]:
            ev[-1].receipt.jws = FORGERIES[forgery](ev[-1].receipt.jws)
            return ev

        tamper_events(c, edit)
        with pytest.raises(AnswerRejected, match="receipt"):
            await c.client().complete("echo", prompt=PROMPT)


async def test_same_job_id_twice_is_credited_once(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await setup(c)
        client = c.client()
        worker = (await client.workers("echo"))[0]
        sealed, inner = client.seal(worker, "echo", prompt=PROMPT)
        from ccgw.client.sdk import Answer

        async for _ in client.stream(worker, sealed, inner, Answer()):
            pass
        paid = await c.gateway.store.balance("provider:p1")
        assert paid[0] > 0
        with pytest.raises(GatewayRefused) as err:
            async for _ in client.stream(worker, sealed, inner, Answer()):
                pass
        assert err.value.code == grpc.StatusCode.ALREADY_EXISTS
        assert await c.gateway.store.balance("provider:p1") == paid
        # Even a second settle of the same job (a replica retrying) moves no money.
        jws, index = await c.gateway.store.receipt(
            cpb.RoutingHeader.FromString(sealed.header).job_id
        )  # type: ignore[misc]
        again = await c.gateway.store.settle(
            cpb.RoutingHeader.FromString(sealed.header).job_id,
            receipt_jws=jws,
            evidence_sha256="00" * 32,
        )
        assert again.already_settled and again.log_index == index
        assert await c.gateway.store.balance("provider:p1") == paid


async def test_oversized_request_is_refused_before_decryption(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        engine = await setup(c)
        client = c.client()
        worker = (await client.workers("echo"))[0]
        sealed, inner = client.seal(worker, "echo", prompt=PROMPT)
        from ccgw.client.sdk import Answer

        big = cpb.SealedRequest(
            header=sealed.header, ciphertext=sealed.ciphertext + b"\x00" * 2_000_000
        )
        with pytest.raises(GatewayRefused) as err:
            async for _ in client.stream(worker, big, inner, Answer()):
                pass
        assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        padded = cpb.SealedRequest(
            header=sealed.header, ciphertext=sealed.ciphertext + b"\x00" * 100
        )
        with pytest.raises(GatewayRefused) as err:
            async for _ in client.stream(worker, padded, inner, Answer()):
                pass
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(Exception, match="exceeds the largest bucket"):
            client.seal(worker, "echo", prompt="x" * 2_000_000)
        assert engine.seen_prompts == 0
        await no_reward(c)


async def test_tokens_with_wrong_algorithms_are_refused(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await setup(c)
        pub = c.auth_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        claims = {"sub": "client:alice", "role": "client", "aud": "ccgw", "iat": 0, "exp": 2**40}
        none_tok = jwt.encode(claims, None, algorithm="none")
        hs_tok = _hs256(claims, pub)  # pyjwt itself refuses to make this token
        other = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA")
        for tok in (none_tok, hs_tok, other, "garbage"):
            md = [("authorization", f"Bearer {tok}")]
            from ccgw.protos.ccgw.v1 import gateway_pb2_grpc

            async with grpc.aio.insecure_channel(c.address) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await gateway_pb2_grpc.GatewayStub(ch).GetBalance(
                        gpb.GetBalanceRequest(), metadata=md
                    )
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _hs256(claims: dict[str, object], secret: bytes) -> str:
    import hashlib
    import hmac

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    signing = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + b64(json.dumps(claims).encode())
    )
    return signing + "." + b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())
