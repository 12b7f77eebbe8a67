"""The engine on a CUDA device (skipped without one): same greedy tokens as on CPU in float32,
bfloat16 runs, and still one device→host copy per decode step."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from ccgw.enclave.engine import EngineLimits, Finished, GenerationRequest, TextDelta, load_engine
from ccgw.enclave.engine.tiny import write_tiny_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


async def answers(device: str, dtype: str, model: Path) -> list[tuple[str, int]]:
    e = load_engine(model, "t", device=device, dtype=dtype, limits=EngineLimits(batch_size_max=4))
    reqs = [
        GenerationRequest(prompt=p, messages=None, max_new_tokens=24, max_input_tokens=64)
        for p in ("alpha", "a longer prompt here", "z")
    ]

    async def one(r: GenerationRequest) -> tuple[str, int]:
        items = [x async for x in e.generate(r)]
        fin = items[-1]
        assert isinstance(fin, Finished)
        return "".join(x.text for x in items if isinstance(x, TextDelta)), fin.output_tokens

    try:
        out = list(await asyncio.gather(*(one(r) for r in reqs)))
        assert e.stats.device_to_host_copies == e.stats.steps
        return out
    finally:
        await e.aclose()


async def test_cuda_matches_cpu_greedy_and_runs_bfloat16(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "m")
    cpu = await answers("cpu", "float32", model)
    cuda = await answers("cuda:0", "float32", model)
    assert cuda == cpu
    bf16 = await answers("cuda:0", "bfloat16", model)
    assert [n for _, n in bf16] == [24, 24, 24]
