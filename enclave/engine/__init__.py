"""Engine interface (placeholder until the torch engine lands; the engine branch replaces this)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class EngineLimits:
    batch_size_max: int = 8
    context_tokens_max: int = 2048
    queued_jobs_max: int = 64
    prompt_tokens_max: int = 1536
    new_tokens_max: int = 512


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str | None
    messages: tuple[tuple[str, str], ...] | None
    max_new_tokens: int
    max_input_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    text: str
    tokens: int


@dataclass(frozen=True)
class Finished:
    input_tokens: int
    output_tokens: int
    finish_reason: str


class Engine(Protocol):
    name: str
    model_sha256: bytes
    device: str

    def generate(self, req: GenerationRequest) -> AsyncIterator[TextDelta | Finished]: ...

    async def aclose(self) -> None: ...
