"""The worker's torch inference engine: Llama-family decoders with continuous batching, and
BERT-family encoders for embeddings (`enclave.engine.bert`).

    api.py        value types of the contract with the worker agent (no torch)
    engine.py     Engine (asyncio face) and load_engine
    scheduler.py  the continuous-batching thread
    loader.py     digest first, safetensors only, every shape checked
    config.py     ModelArgs from config.json      rope.py   RoPE scaling variants
    model.py      the decoder over a slot KV cache
    sampling.py   batched on-device sampling      detok.py  UTF-8- and stop-safe text deltas
    tokenizer.py  tokenizer.json + sandboxed chat templates
    tiny.py       `python -m enclave.engine.tiny OUT_DIR`: a tiny random model for demos and tests
"""

from __future__ import annotations

from ccgw.enclave.engine.api import (
    EngineLimits,
    EngineStats,
    Finished,
    GenerationRequest,
    TextDelta,
)
from ccgw.enclave.engine.engine import Engine, load_engine

__all__ = [
    "Engine",
    "EngineLimits",
    "EngineStats",
    "Finished",
    "GenerationRequest",
    "TextDelta",
    "load_engine",
]
