"""BERT-family encoders for embeddings (e.g. all-MiniLM-L6-v2): mean pooling over the attention
mask, then L2 normalisation. Same loading rules as the decoder: digest first, safetensors only,
every tensor's name and shape checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer as HfTokenizer
from torch import nn

from ccgw.enclave.engine.loader import ModelDir
from ccgw.enclave.engine.tokenizer import load_tokenizer
from ccgw.enclave.errors import ModelError, TooLarge

_IGNORED = ("embeddings.position_ids", "pooler.")


@dataclass(frozen=True)
class BertArgs:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> BertArgs:
        if "BertModel" not in (cfg.get("architectures") or []) and cfg.get("model_type") != "bert":
            raise ModelError(f"not a BERT encoder: {cfg.get('architectures')!r}")
        if (
            cfg.get("hidden_act", "gelu") != "gelu"
            or cfg.get("position_embedding_type", "absolute") != "absolute"
        ):
            raise ModelError("only gelu activations and absolute positions are supported")
        try:
            return cls(
                vocab_size=int(cfg["vocab_size"]),
                hidden_size=int(cfg["hidden_size"]),
                num_layers=int(cfg["num_hidden_layers"]),
                num_heads=int(cfg["num_attention_heads"]),
                intermediate_size=int(cfg["intermediate_size"]),
                max_position=int(cfg.get("max_position_embeddings", 512)),
                type_vocab_size=int(cfg.get("type_vocab_size", 2)),
                layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"config.json is missing or has a bad field: {exc}") from exc


def _embedding(n: int, d: int) -> nn.Embedding:
    return nn.Embedding(n, d, _weight=torch.empty(n, d))


class _Embeddings(nn.Module):
    def __init__(self, a: BertArgs) -> None:
        super().__init__()
        # _weight skips a random init that loading overwrites anyway (slow on `meta`).
        self.word_embeddings = _embedding(a.vocab_size, a.hidden_size)
        self.position_embeddings = _embedding(a.max_position, a.hidden_size)
        self.token_type_embeddings = _embedding(a.type_vocab_size, a.hidden_size)
        self.LayerNorm = nn.LayerNorm(a.hidden_size, eps=a.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)[None]
        x = (
            self.word_embeddings(ids)
            + self.position_embeddings(pos)
            + self.token_type_embeddings(torch.zeros_like(ids))
        )
        y: torch.Tensor = self.LayerNorm(x)
        return y


class _Dense(nn.Module):
    def __init__(self, n_in: int, n_out: int, eps: float | None = None) -> None:
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        if eps is not None:
            self.LayerNorm = nn.LayerNorm(n_out, eps=eps)


class _SelfAttention(nn.Module):
    def __init__(self, a: BertArgs) -> None:
        super().__init__()
        self.query = nn.Linear(a.hidden_size, a.hidden_size)
        self.key = nn.Linear(a.hidden_size, a.hidden_size)
        self.value = nn.Linear(a.hidden_size, a.hidden_size)


class _Attention(nn.Module):
    def __init__(self, a: BertArgs) -> None:
        super().__init__()
        self.self = _SelfAttention(a)
        self.output = _Dense(a.hidden_size, a.hidden_size, a.layer_norm_eps)


class _Layer(nn.Module):
    def __init__(self, a: BertArgs) -> None:
        super().__init__()
        self.a = a
        self.attention = _Attention(a)
        self.intermediate = _Dense(a.hidden_size, a.intermediate_size)
        self.output = _Dense(a.intermediate_size, a.hidden_size, a.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.a.num_heads
        sa = self.attention.self

        def heads(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, h, d // h).transpose(1, 2)

        att = F.scaled_dot_product_attention(
            heads(sa.query(x)), heads(sa.key(x)), heads(sa.value(x)), attn_mask=mask
        )
        att = att.transpose(1, 2).reshape(b, t, d)
        x = self.attention.output.LayerNorm(x + self.attention.output.dense(att))
        inter = F.gelu(self.intermediate.dense(x))
        y: torch.Tensor = self.output.LayerNorm(x + self.output.dense(inter))
        return y


class _Encoder(nn.Module):
    def __init__(self, a: BertArgs) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(a) for _ in range(a.num_layers))


class BertModel(nn.Module):
    def __init__(self, a: BertArgs) -> None:
        super().__init__()
        self.args = a
        self.embeddings = _Embeddings(a)
        self.encoder = _Encoder(a)

    def forward(self, ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Token states [b, t, d]; `attention` is 1 for real tokens, 0 for padding."""
        mask = attention[:, None, None, :].bool()
        x: torch.Tensor = self.embeddings(ids)
        for layer in self.encoder.layer:
            x = layer(x, mask)
        return x


class Embedder:
    """Sentence embeddings: tokenize (with [CLS]/[SEP]), encode, mean-pool, normalise."""

    def __init__(self, model: BertModel, tok: HfTokenizer, sha256: bytes, max_tokens: int) -> None:
        self.model, self._tok, self.model_sha256, self.max_tokens = model, tok, sha256, max_tokens

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens each text encodes to ([CLS] and [SEP] included)."""
        return [len(e.ids) for e in self._tok.encode_batch(texts)]

    @torch.inference_mode()
    def embed(self, texts: list[str], batch_texts_max: int = 64) -> torch.Tensor:
        if len(texts) > batch_texts_max:
            raise TooLarge(f"at most {batch_texts_max} texts per call")
        encs = [self._tok.encode(t) for t in texts]
        if any(len(e.ids) > self.max_tokens for e in encs):
            raise TooLarge(f"a text exceeds {self.max_tokens} tokens")
        width = max(len(e.ids) for e in encs)
        ids = torch.zeros(len(encs), width, dtype=torch.long)
        att = torch.zeros(len(encs), width, dtype=torch.long)
        for i, e in enumerate(encs):
            ids[i, : len(e.ids)] = torch.tensor(e.ids)
            att[i, : len(e.ids)] = 1
        states = self.model(ids, att)
        pooled = (states * att[..., None]).sum(1) / att.sum(1, keepdim=True).clamp(min=1)
        return F.normalize(pooled, p=2, dim=-1)


def _bert_name(name: str) -> str | None:
    key = name.removeprefix("bert.")
    return None if key.startswith(_IGNORED) else key


def load_embedder(
    model_dir: Path, expected_sha256: bytes | None = None, max_tokens: int = 256
) -> Embedder:
    md = ModelDir(Path(model_dir), expected_sha256)  # the digest is checked here, first
    args = BertArgs.from_config(md.json("config.json"))
    with torch.device("meta"):
        model = BertModel(args)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = md.state(expected, device=torch.device("cpu"), dtype=torch.float32, rename=_bert_name)
    model.load_state_dict(state, assign=True)
    model.eval()
    tok = load_tokenizer(md)
    if md.has("sentence_bert_config.json"):
        seq_max = md.json("sentence_bert_config.json").get("max_seq_length", max_tokens)
        if isinstance(seq_max, int) and seq_max > 0:
            max_tokens = min(max_tokens, seq_max)
    return Embedder(model, tok, md.sha256, min(max_tokens, args.max_position))
