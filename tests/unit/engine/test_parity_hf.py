"""Parity with an implementation written by others: our logits equal Hugging Face transformers'
(test-only dependency) within 1e-4 relative error in float32, for each supported family."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from enclave.engine.loader import load_model
from enclave.engine.tiny import write_tiny_model

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_logits_match_transformers(family: str, tmp_path: Path) -> None:
    d = write_tiny_model(tmp_path / family, family=family, seed=3)
    ours, _ = load_model(d, None, "cpu", torch.float32)
    ref = transformers.AutoModelForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32)
    ref.eval()
    tokens = torch.tensor([[256, 5, 17, 99, 3, 200, 41, 7, 8, 120, 33]])
    with torch.inference_mode():
        ours.setup_cache(1, 64, torch.device("cpu"), torch.float32)
        mine = ours(tokens, 0)
        theirs = ref(tokens).logits.float()
        # incremental decoding with the KV cache equals the full forward pass
        ours.setup_cache(1, 64, torch.device("cpu"), torch.float32)
        ours(tokens[:, :-1], 0)
        step = ours(tokens[:, -1:], tokens.shape[1] - 1)
    rel = (mine - theirs).abs().max() / theirs.abs().max()
    assert rel < 1e-4, f"{family}: relative error {rel:.2e}"
    rel_step = (step[0, -1] - theirs[0, -1]).abs().max() / theirs.abs().max()
    assert rel_step < 1e-4, f"{family}: cached step relative error {rel_step:.2e}"
