"""Embedding jobs: an encoder (enclave.engine.bert) served through the same sealed job path as
text generation. The job runner calls `embed_events`, which yields `Vectors` groups sized to fit
one answer chunk each and then `Finished` (input tokens counted, no output tokens).

Limits: at most `texts_max` texts per job, and their tokens together within the request's
`max_input_tokens` (the same bound a prompt has); each text within the encoder's own maximum.
One job runs on the encoder at a time, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccgw.enclave.engine import Finished, GenerationRequest, TextDelta
from ccgw.enclave.errors import ModelError, RequestRejected, TooLarge
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.verify import limits

TEXTS_MAX = 64
_PIECE_OVERHEAD_BYTES = 256  # usage, finish reason, protobuf tags: well above what they take
_VECTOR_OVERHEAD_BYTES = 16  # index and length prefix of one Embedding


@dataclass(frozen=True)
class Vectors:
    """Consecutive embeddings, starting at input position `first`."""

    first: int
    values: tuple[tuple[float, ...], ...]

    def pieces(self) -> list[cpb.Embedding]:
        return [cpb.Embedding(index=self.first + i, values=v) for i, v in enumerate(self.values)]


def vectors_per_chunk(dim: int) -> int:
    room = limits.CHUNK_PLAINTEXT_BYTES_MAX - _PIECE_OVERHEAD_BYTES
    n = room // (4 * dim + _VECTOR_OVERHEAD_BYTES)
    if n < 1:
        raise ModelError(f"embedding dimension {dim} does not fit one answer chunk")
    return n


class EmbeddingModel:
    """A loaded encoder with the face the worker agent expects of a model (name, digest)."""

    device = "cpu"

    def __init__(self, embedder: Any, name: str) -> None:
        self._embedder = embedder
        self.name = name
        self.model_sha256: bytes = embedder.model_sha256
        self._lock = asyncio.Lock()

    async def generate(self, req: GenerationRequest) -> AsyncIterator[TextDelta | Finished]:
        raise RequestRejected(f"model {self.name!r} is an embedding model: ask for embeddings")
        yield  # pragma: no cover - makes this an async generator

    def _run(self, texts: list[str], max_input_tokens: int) -> tuple[list[list[float]], int]:
        counts = self._embedder.token_counts(texts)
        if sum(counts) > max_input_tokens:
            raise TooLarge(f"the texts exceed {max_input_tokens} input tokens together")
        out = self._embedder.embed(texts, batch_texts_max=TEXTS_MAX)
        return out.tolist(), sum(counts)

    async def embed(
        self, texts: Sequence[str], max_input_tokens: int
    ) -> tuple[list[list[float]], int]:
        if not texts:
            raise RequestRejected("no texts to embed")
        if len(texts) > TEXTS_MAX:
            raise TooLarge(f"at most {TEXTS_MAX} texts per job")
        async with self._lock:
            return await asyncio.to_thread(self._run, list(texts), max_input_tokens)

    async def aclose(self) -> None:
        return None


async def embed_events(
    engine: object, texts: Sequence[str], max_input_tokens: int
) -> AsyncIterator[Vectors | Finished]:
    if not isinstance(engine, EmbeddingModel):
        raise RequestRejected("this model generates text: it serves no embeddings")
    vectors, tokens = await engine.embed(texts, max_input_tokens)
    step = vectors_per_chunk(len(vectors[0]))
    for i in range(0, len(vectors), step):
        yield Vectors(i, tuple(tuple(v) for v in vectors[i : i + step]))
    yield Finished(input_tokens=tokens, output_tokens=0, finish_reason="stop")


def is_encoder(model_dir: Path) -> bool:
    """Whether the directory holds a BERT-family encoder (only chooses the loader: the loader
    checks the weights' digest before anything is used)."""
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(cfg, dict):
        return False
    return cfg.get("model_type") == "bert" or "BertModel" in (cfg.get("architectures") or [])


def load_embedding_model(
    model_dir: Path, name: str, expected_sha256: bytes | None = None
) -> EmbeddingModel:
    from ccgw.enclave.engine.bert import load_embedder

    return EmbeddingModel(load_embedder(model_dir, expected_sha256), name)
