"""Parity with an implementation written by others: our logits equal Hugging Face transformers'
(test-only dependency) within 1e-4 relative error in float32, for each supported family and each
RoPE / attention variant we claim: full prefill, a cached one-token step, and a batched decode
step where each row sits at its own position (the path continuous batching uses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from ccgw.enclave.engine.loader import load_model
from ccgw.enclave.engine.tiny import write_tiny_model

transformers = pytest.importorskip("transformers", reason="pip install transformers (test-only)")

TOKENS = [256, 5, 17, 99, 3, 200, 41, 7, 8, 120, 33, 70, 71, 72, 9, 250, 101, 102, 44, 45]

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama-llama3-rope": ("llama", {}),
    "llama-linear-rope-bias": (
        "llama",
        {"rope_scaling": {"rope_type": "linear", "factor": 4.0}, "attention_bias": True},
    ),
    "llama-dynamic-rope": ("llama", {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}),
    "llama-mha-untied": ("llama", {"num_key_value_heads": 4, "rope_scaling": None}),
    "qwen2-tied-biases": ("qwen2", {}),
    "qwen2-sliding-window": (
        "qwen2",
        {"use_sliding_window": True, "sliding_window": 6, "max_window_layers": 1},
    ),
    "mistral": ("mistral", {}),
    "mistral-sliding-window": ("mistral", {"sliding_window": 5}),
}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_logits_match_transformers(variant: str, tmp_path: Path) -> None:
    family, overrides = VARIANTS[variant]
    d = write_tiny_model(tmp_path / variant, family=family, seed=3, overrides=overrides)
    cfg = json.loads((d / "config.json").read_text())
    if overrides.get("attention_bias"):  # the checkpoint needs the bias tensors too
        from safetensors.torch import load_file, save_file

        state = load_file(str(d / "model.safetensors"))
        g = torch.Generator().manual_seed(1)
        for i in range(cfg["num_hidden_layers"]):
            for proj in ("q", "k", "v", "o"):
                w = state[f"model.layers.{i}.self_attn.{proj}_proj.weight"]
                state[f"model.layers.{i}.self_attn.{proj}_proj.bias"] = torch.randn(
                    w.shape[0], generator=g
                )
        save_file(state, str(d / "model.safetensors"))

    ours, _ = load_model(d, None, "cpu", torch.float32)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(d), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    tokens = torch.tensor([TOKENS])
    n = tokens.shape[1]
    with torch.inference_mode():
        theirs = ref(tokens).logits.float()
        ours.setup_cache(2, 64, torch.device("cpu"), torch.float32)
        full = ours(tokens, 0)
        # prefix, then one cached step
        ours.setup_cache(2, 64, torch.device("cpu"), torch.float32)
        ours(tokens[:, :-1], 0)
        step = ours(tokens[:, -1:], n - 1)
        # two sequences of different lengths in slots 0 and 1, one decode step each at its own
        # position (continuous batching)
        short = tokens[:, : n - 6]
        theirs_short = ref(short).logits.float()
        ours.setup_cache(2, 64, torch.device("cpu"), torch.float32)
        ours.extend(tokens[:, :-1], first_slot=0)
        ours.extend(short[:, :-1], first_slot=1)
        batched = ours.extend(
            torch.tensor([[TOKENS[-1]], [TOKENS[n - 7]]]),
            positions=torch.tensor([n - 1, n - 7]),
            kv_len=n,
        )
    assert rel(full, theirs) < 1e-4, f"{variant}: full pass"
    assert rel(step[0, -1], theirs[0, -1]) < 1e-4, f"{variant}: cached step"
    assert rel(batched[0, -1], theirs[0, -1]) < 1e-4, f"{variant}: batched row 0"
    assert rel(batched[1, -1], theirs_short[0, -1]) < 1e-4, f"{variant}: batched row 1"


def test_dynamic_rope_beyond_the_trained_context(tmp_path: Path) -> None:
    """transformers rescales dynamic RoPE from the current length; we fix it at the engine's
    context (see rope.py), so the two agree when that context equals the sequence length."""
    d = write_tiny_model(tmp_path / "dyn", family="llama", seed=3)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(rope_scaling={"rope_type": "dynamic", "factor": 2.0}, max_position_embeddings=16)
    (d / "config.json").write_text(json.dumps(cfg))
    ours, _ = load_model(d, None, "cpu", torch.float32)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(d), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    tokens = torch.tensor([TOKENS])
    with torch.inference_mode():
        theirs = ref(tokens).logits.float()
        ours.setup_cache(1, len(TOKENS), torch.device("cpu"), torch.float32)
        assert rel(ours(tokens, 0), theirs) < 1e-4
