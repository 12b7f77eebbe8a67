"""A Llama-family decoder in plain torch (Llama 3.x, Qwen2.x, Mistral): RMSNorm, RoPE (with the
llama3 / linear scaling variants), grouped-query attention with a preallocated KV cache, SwiGLU
MLP, optional q/k/v biases and tied embeddings. Built on the `meta` device, weights assigned later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from enclave.errors import ModelError

SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}


@dataclass(frozen=True)
class ModelArgs:
    family: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict[str, Any] | None
    tie_embeddings: bool
    attention_bias: bool
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ModelArgs:
        archs = cfg.get("architectures") or []
        family = next(
            (SUPPORTED_ARCHITECTURES[a] for a in archs if a in SUPPORTED_ARCHITECTURES), None
        )
        if family is None:
            raise ModelError(
                f"unsupported architecture {archs!r}; supported: {sorted(SUPPORTED_ARCHITECTURES)}"
            )
        try:
            hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
            eos = cfg.get("eos_token_id")
            eos_ids = tuple(eos) if isinstance(eos, list) else ((eos,) if eos is not None else ())
            return cls(
                family=family,
                vocab_size=int(cfg["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(cfg["intermediate_size"]),
                num_layers=int(cfg["num_hidden_layers"]),
                num_heads=heads,
                num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
                head_dim=int(cfg.get("head_dim") or hidden // heads),
                max_position=int(cfg.get("max_position_embeddings", 2048)),
                rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
                rope_theta=float(cfg.get("rope_theta", 10000.0)),
                rope_scaling=cfg.get("rope_scaling"),
                tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
                attention_bias=bool(cfg.get("attention_bias", family == "qwen2")),
                eos_token_ids=tuple(int(e) for e in eos_ids),
                bos_token_id=cfg.get("bos_token_id"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"config.json is missing or has a bad field: {exc}") from exc


def rope_frequencies(args: ModelArgs) -> torch.Tensor:
    inv = 1.0 / (
        args.rope_theta ** (torch.arange(0, args.head_dim, 2, dtype=torch.float64) / args.head_dim)
    )
    scaling = args.rope_scaling or {}
    kind = scaling.get("rope_type") or scaling.get("type")
    if kind == "linear":
        inv = inv / float(scaling["factor"])
    elif kind == "llama3":
        factor = float(scaling["factor"])
        low, high = (
            float(scaling.get("low_freq_factor", 1.0)),
            float(scaling.get("high_freq_factor", 4.0)),
        )
        old_ctx = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        smooth = (old_ctx / wavelen - low) / (high - low)
        scaled = torch.where(wavelen > old_ctx / low, inv / factor, inv)
        mid = (1 - smooth) * inv / factor + smooth * inv
        is_mid = (wavelen <= old_ctx / low) & (wavelen >= old_ctx / high)
        inv = torch.where(is_mid, mid, scaled)
    elif kind not in (None, "default"):
        raise ModelError(f"unsupported rope_scaling type {kind!r}")
    return inv.float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # HF layout: rotate halves.
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * out.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        self.a = a
        self.q_proj = nn.Linear(a.hidden_size, a.num_heads * a.head_dim, bias=a.attention_bias)
        self.k_proj = nn.Linear(a.hidden_size, a.num_kv_heads * a.head_dim, bias=a.attention_bias)
        self.v_proj = nn.Linear(a.hidden_size, a.num_kv_heads * a.head_dim, bias=a.attention_bias)
        self.o_proj = nn.Linear(a.num_heads * a.head_dim, a.hidden_size, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor],
        slots: torch.Tensor,
        positions: torch.Tensor,
        kv_len: int,
    ) -> torch.Tensor:
        """x [b, t, d]; row i is cache slot slots[i] at absolute positions positions[i] ([b, t])."""
        b, t, _ = x.shape
        a = self.a
        q = self.q_proj(x).view(b, t, a.num_heads, a.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, a.num_kv_heads, a.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, a.num_kv_heads, a.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k_cache, v_cache = cache
        rows = slots[:, None]
        k_cache[rows, :, positions] = k.transpose(1, 2)
        v_cache[rows, :, positions] = v.transpose(1, 2)
        keys, values = k_cache[slots, :, :kv_len], v_cache[slots, :, :kv_len]
        rep = a.num_heads // a.num_kv_heads
        if rep > 1:
            keys = keys.repeat_interleave(rep, dim=1)
            values = values.repeat_interleave(rep, dim=1)
        key_pos = torch.arange(kv_len, device=x.device)
        mask = (key_pos[None, None, :] <= positions[:, :, None])[:, None]  # [b, 1, t, kv_len]
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        y: torch.Tensor = self.o_proj(out.transpose(1, 2).reshape(b, t, a.num_heads * a.head_dim))
        return y


class MLP(nn.Module):
    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(a.hidden_size, a.intermediate_size, bias=False)
        self.up_proj = nn.Linear(a.hidden_size, a.intermediate_size, bias=False)
        self.down_proj = nn.Linear(a.intermediate_size, a.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return y


class Layer(nn.Module):
    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        self.self_attn = Attention(a)
        self.mlp = MLP(a)
        self.input_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor],
        slots: torch.Tensor,
        positions: torch.Tensor,
        kv_len: int,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, slots, positions, kv_len)
        y: torch.Tensor = x + self.mlp(self.post_attention_layernorm(x))
        return y


class Inner(nn.Module):
    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(a.vocab_size, a.hidden_size)
        self.layers = nn.ModuleList(Layer(a) for _ in range(a.num_layers))
        self.norm = RMSNorm(a.hidden_size, a.rms_norm_eps)


class Transformer(nn.Module):
    """HF parameter names (model.layers.N.self_attn.q_proj.weight, lm_head.weight, ...)."""

    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        self.args = a
        self.model = Inner(a)
        self.lm_head = nn.Linear(a.hidden_size, a.vocab_size, bias=False)
        self.caches: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.inv_freq: torch.Tensor | None = None

    def setup_cache(
        self, batch: int, length: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        a = self.args
        shape = (batch, a.num_kv_heads, length, a.head_dim)
        self.caches = [
            (
                torch.zeros(shape, device=device, dtype=dtype),
                torch.zeros(shape, device=device, dtype=dtype),
            )
            for _ in range(a.num_layers)
        ]
        self.inv_freq = rope_frequencies(a).to(device)

    def step(
        self, tokens: torch.Tensor, slots: torch.Tensor, positions: torch.Tensor, kv_len: int
    ) -> torch.Tensor:
        """One forward pass for several sequences sharing the preallocated cache.

        tokens [b, t] at absolute positions [b, t] in cache slots [b]; kv_len bounds the keys
        attended to (the caller knows it without asking the device). Returns float32 logits."""
        assert self.inv_freq is not None, "setup_cache first"
        freqs = positions.to(torch.float32)[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [b, 1, t, head_dim]
        x = self.model.embed_tokens(tokens)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        for layer, cache in zip(self.model.layers, self.caches, strict=True):
            x = layer(x, cos, sin, cache, slots, positions, kv_len)
        logits: torch.Tensor = self.lm_head(self.model.norm(x))
        return logits.float()

    def forward(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """Batch rows in slots 0..b-1, all at positions pos..pos+t-1."""
        b, t = tokens.shape
        slots = torch.arange(b, device=tokens.device)
        positions = torch.arange(pos, pos + t, device=tokens.device).expand(b, t)
        return self.step(tokens, slots, positions, pos + t)
