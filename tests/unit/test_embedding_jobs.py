"""Embedding jobs inside the worker: bounds before any encoding, vectors split to fit answer
chunks, and the client's order check on what comes back."""

from __future__ import annotations

from typing import Any

import pytest

from ccgw.client.errors import AnswerRejected
from ccgw.client.sdk import _take_embeddings
from ccgw.enclave.embedding import (
    TEXTS_MAX,
    EmbeddingModel,
    Vectors,
    embed_events,
    vectors_per_chunk,
)
from ccgw.enclave.engine import Finished, GenerationRequest
from ccgw.enclave.errors import ModelError, RequestRejected, TooLarge
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.verify import limits


class FakeEmbedder:
    model_sha256 = b"\x07" * 32

    def __init__(self, dim: int = 4) -> None:
        self.dim, self.calls = dim, 0

    def token_counts(self, texts: list[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]

    def embed(self, texts: list[str], batch_texts_max: int) -> Any:
        self.calls += 1

        class T:
            def tolist(_self) -> list[list[float]]:
                return [[float(i)] * self.dim for i in range(len(texts))]

        return T()


async def collect(engine: object, texts: list[str], max_tokens: int = 100) -> list[object]:
    return [ev async for ev in embed_events(engine, texts, max_tokens)]


async def test_vectors_then_finished_with_input_tokens() -> None:
    evs = await collect(EmbeddingModel(FakeEmbedder(), "e"), ["a b", "c"])
    assert isinstance(evs[0], Vectors) and [p.index for p in evs[0].pieces()] == [0, 1]
    assert evs[-1] == Finished(input_tokens=7, output_tokens=0, finish_reason="stop")


async def test_bounds_refuse_before_encoding() -> None:
    fake = FakeEmbedder()
    model = EmbeddingModel(fake, "e")
    with pytest.raises(TooLarge):
        await collect(model, ["x"] * (TEXTS_MAX + 1))
    with pytest.raises(TooLarge):
        await collect(model, ["a b c d"] * 3, max_tokens=10)
    with pytest.raises(RequestRejected):
        await collect(model, [])
    assert fake.calls == 0
    with pytest.raises(RequestRejected, match="embeddings"):  # a text model serves none
        await collect(object(), ["x"])
    req = GenerationRequest(prompt="p", messages=None, max_new_tokens=1, max_input_tokens=9)
    with pytest.raises(RequestRejected, match="embedding model"):
        async for _ in model.generate(req):
            pass


async def test_large_vectors_are_split_across_chunks_that_fit() -> None:
    dim = 1024
    evs = await collect(EmbeddingModel(FakeEmbedder(dim), "e"), ["x"] * 40, 1000)
    groups = [e for e in evs if isinstance(e, Vectors)]
    assert len(groups) > 1 and sum(len(g.values) for g in groups) == 40
    for g in groups:
        size = cpb.AnswerPiece(embeddings=g.pieces()).ByteSize()
        assert size <= limits.CHUNK_PLAINTEXT_BYTES_MAX
    with pytest.raises(ModelError):
        vectors_per_chunk(limits.CHUNK_PLAINTEXT_BYTES_MAX)


def test_client_refuses_vectors_out_of_order_or_empty() -> None:
    got: list[list[float]] = []
    _take_embeddings(cpb.AnswerPiece(embeddings=[cpb.Embedding(index=0, values=[1.0])]), got)
    for bad in (cpb.Embedding(index=2, values=[1.0]), cpb.Embedding(index=1, values=[])):
        with pytest.raises(AnswerRejected):
            _take_embeddings(cpb.AnswerPiece(embeddings=[bad]), got)
    assert got == [[1.0]]
