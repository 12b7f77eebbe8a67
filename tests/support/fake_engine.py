"""A deterministic stand-in for the torch engine, for protocol tests that are about bytes on the
wire, not about inference. It answers with the prompt's words reversed, one token per word."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from ccgw.enclave.engine import Finished, GenerationRequest, TextDelta
from ccgw.enclave.errors import TooLarge


class EchoEngine:
    device = "cpu"

    def __init__(self, name: str = "echo", delay_s: float = 0.0) -> None:
        self.name = name
        self.model_sha256 = hashlib.sha256(b"echo-model:" + name.encode()).digest()
        self.delay_s = delay_s
        self.seen_prompts = 0

    async def generate(self, req: GenerationRequest) -> AsyncIterator[TextDelta | Finished]:
        text = req.prompt if req.prompt is not None else " ".join(c for _, c in req.messages or ())
        words = text.split()
        if len(words) > req.max_input_tokens:
            raise TooLarge("prompt exceeds max_input_tokens")
        self.seen_prompts += 1
        out = list(reversed(words))[: req.max_new_tokens]
        for w in out:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield TextDelta(text=w + " ", tokens=1)
        reason = "length" if len(words) > req.max_new_tokens else "stop"
        yield Finished(input_tokens=len(words), output_tokens=len(out), finish_reason=reason)

    async def aclose(self) -> None:
        return None
