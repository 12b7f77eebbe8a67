"""Cheating workers for spot-check tests and bench/spotcheck_bench.py: each wraps a real engine and
lies in one way a compromised TEE could (ADR 14). They sign honest-looking receipts: catching them
is the scoring pass's job."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ccgw.enclave.engine import Finished, GenerationRequest, TextDelta
from ccgw.enclave.engine.engine import Engine

MODES = ("truncate", "substitute", "replay")


def perturbed_model(src: Path, dst: Path, *, noise: float = 0.0, levels: int = 0) -> Path:
    """A copy of a model directory with its weights perturbed: gaussian noise of `noise` times
    each tensor's std, or rounded to `levels` levels per tensor (symmetric quantisation)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name != "model.safetensors":
            (dst / f.name).write_bytes(f.read_bytes())
    state = load_file(str(src / "model.safetensors"))
    gen = torch.Generator().manual_seed(1234)
    out = {}
    for name, t in state.items():
        x = t.float()
        if t.dim() > 1:
            if noise:
                x = x + torch.randn(x.shape, generator=gen) * x.std() * noise
            if levels:
                scale = x.abs().max() / (levels // 2)
                x = torch.round(x / scale) * scale
        out[name] = x.to(t.dtype).contiguous()
    save_file(out, str(dst / "model.safetensors"))
    return dst


class Cheat:
    """An engine that answers by `mode`: truncate (stop after half the tokens, claiming a natural
    stop), substitute (another text of the same token count), replay (the previous job's answer).
    Everything else is the wrapped engine's."""

    def __init__(self, inner: Engine, mode: str) -> None:
        assert mode in MODES
        self._inner, self.mode = inner, mode
        self._last: tuple[str, Finished] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def generate(self, req: GenerationRequest) -> AsyncIterator[TextDelta | Finished]:
        parts, fin = [], None
        async for ev in self._inner.generate(req):
            if isinstance(ev, TextDelta):
                parts.append(ev.text)
            else:
                fin = ev
        assert fin is not None
        text = "".join(parts)
        if self.mode == "truncate":
            n = max(1, fin.output_tokens // 2)
            text, fin = text[:n], Finished(fin.input_tokens, n, "stop")
        elif self.mode == "substitute":
            text = "".join("xq"[i % 2] for i in range(len(text)))
        elif self.mode == "replay":
            previous, self._last = self._last, (text, fin)
            if previous is not None:
                text, fin = previous
        yield TextDelta(text, fin.output_tokens)
        yield fin
