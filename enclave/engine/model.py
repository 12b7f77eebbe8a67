"""A Llama-family decoder in plain torch (Llama 3.x, Qwen2.x, Mistral) over a slot KV cache.

RMSNorm, RoPE (variants in rope.py), grouped-query attention with optional q/k/v biases and
per-layer sliding windows, SwiGLU MLP, tied embeddings. Parameters carry transformers' names so a
checkpoint's state dict maps one to one; the module is built on the `meta` device and the loader
assigns the weights.

The KV cache is preallocated: [slots, kv_heads, context, head_dim] per layer. The scheduler keeps
the live sequences in slots 0..n-1 (it moves the last one into a freed slot), so a decode step
attends to plain views `cache[:n, :, :kv_len]`: no per-step gather of the cache, no allocation
proportional to the context. Only `extend` exists: it appends t tokens to b sequences, either all
at the same position (prefill, and the parity tests) or one token each at its own position
(decode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ccgw.enclave.engine.config import ModelArgs
from ccgw.enclave.engine.rope import apply_rope, cos_sin_table, inverse_frequencies

Cache = tuple[torch.Tensor, torch.Tensor]


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
    def __init__(self, a: ModelArgs, window: int | None) -> None:
        super().__init__()
        self.a, self.window = a, window
        q_out, kv_out = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
        self.q_proj = nn.Linear(a.hidden_size, q_out, bias=a.attention_bias)
        self.k_proj = nn.Linear(a.hidden_size, kv_out, bias=a.attention_bias)
        self.v_proj = nn.Linear(a.hidden_size, kv_out, bias=a.attention_bias)
        # Qwen2 puts biases on q/k/v only; Llama's `attention_bias` also covers o_proj.
        self.o_proj = nn.Linear(q_out, a.hidden_size, bias=a.attention_bias and a.family == "llama")

    def forward(self, x: torch.Tensor, cache: Cache, step: Step) -> torch.Tensor:
        b, t, _ = x.shape
        a = self.a
        q = self.q_proj(x).view(b, t, a.num_heads, a.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, a.num_kv_heads, a.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, a.num_kv_heads, a.head_dim).transpose(1, 2)
        q, k = apply_rope(q, step.cos, step.sin), apply_rope(k, step.cos, step.sin)
        k_cache, v_cache = (c[step.first_slot : step.first_slot + b] for c in cache)
        if step.positions is None:
            k_cache[:, :, step.pos0 : step.pos0 + t] = k
            v_cache[:, :, step.pos0 : step.pos0 + t] = v
        else:  # one token per row, each at its own position
            k_cache[step.rows, :, step.positions] = k[:, :, 0]
            v_cache[step.rows, :, step.positions] = v[:, :, 0]
        keys, values = k_cache[:, :, : step.kv_len], v_cache[:, :, : step.kv_len]
        out = F.scaled_dot_product_attention(
            q,
            keys,
            values,
            attn_mask=step.masks[self.window],
            enable_gqa=a.num_heads != a.num_kv_heads,
        )
        y: torch.Tensor = self.o_proj(out.transpose(1, 2).reshape(b, t, a.num_heads * a.head_dim))
        return y


class MLP(nn.Module):
    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(a.hidden_size, a.intermediate_size, bias=a.mlp_bias)
        self.up_proj = nn.Linear(a.hidden_size, a.intermediate_size, bias=a.mlp_bias)
        self.down_proj = nn.Linear(a.intermediate_size, a.hidden_size, bias=a.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return y


class Layer(nn.Module):
    def __init__(self, a: ModelArgs, window: int | None) -> None:
        super().__init__()
        self.self_attn = Attention(a, window)
        self.mlp = MLP(a)
        self.input_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(a.hidden_size, a.rms_norm_eps)

    def forward(self, x: torch.Tensor, cache: Cache, step: Step) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cache, step)
        y: torch.Tensor = x + self.mlp(self.post_attention_layernorm(x))
        return y


class Inner(nn.Module):
    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        # _weight skips the random init: pointless before loading, and on `meta` it costs
        # seconds of lazy imports (torch._dynamo) the first time.
        self.embed_tokens = nn.Embedding(
            a.vocab_size, a.hidden_size, _weight=torch.empty(a.vocab_size, a.hidden_size)
        )
        windows = a.sliding_windows or (None,) * a.num_layers
        self.layers = nn.ModuleList(Layer(a, w) for w in windows)
        self.norm = RMSNorm(a.hidden_size, a.rms_norm_eps)


class Step:
    """What every layer of one forward pass shares: where to write, what to attend to."""

    def __init__(
        self,
        model: Transformer,
        b: int,
        t: int,
        first_slot: int,
        pos0: int,
        positions: torch.Tensor | None,
        kv_len: int,
    ) -> None:
        assert model.cos is not None, "setup_cache first"
        assert model.sin is not None, "setup_cache first"
        self.first_slot, self.pos0, self.positions, self.kv_len = (
            first_slot,
            pos0,
            positions,
            kv_len,
        )
        device = model.cos.device
        key_pos = torch.arange(kv_len, device=device)
        self.rows = torch.arange(b, device=device)
        if positions is None:
            q_pos = torch.arange(pos0, pos0 + t, device=device)[:, None]  # [t, 1]
            self.cos = model.cos[pos0 : pos0 + t][None, None]
            self.sin = model.sin[pos0 : pos0 + t][None, None]
        else:
            q_pos = positions[:, None]  # [b, 1]
            self.cos = model.cos[positions][:, None, None]
            self.sin = model.sin[positions][:, None, None]
        causal = key_pos[None, :] <= q_pos
        self.masks: dict[int | None, torch.Tensor] = {}
        for w in set(model.windows):
            m = causal if w is None else causal & (key_pos[None, :] > q_pos - w)
            # [1, 1, t, kv_len] for a shared position, [b, 1, 1, kv_len] for one per row
            self.masks[w] = m[None, None] if positions is None else m[:, None, None]


class Transformer(nn.Module):
    """HF parameter names (model.layers.N.self_attn.q_proj.weight, lm_head.weight, ...)."""

    def __init__(self, a: ModelArgs) -> None:
        super().__init__()
        self.args = a
        self.windows = a.sliding_windows or (None,) * a.num_layers
        self.model = Inner(a)
        self.lm_head = nn.Linear(a.hidden_size, a.vocab_size, bias=False)
        self.caches: list[Cache] = []
        self.cos: torch.Tensor | None = None
        self.sin: torch.Tensor | None = None

    def setup_cache(
        self, slots: int, length: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        """Preallocate the KV cache for `slots` sequences of up to `length` tokens each."""
        a = self.args
        shape = (slots, a.num_kv_heads, length, a.head_dim)
        self.caches = [
            (
                torch.zeros(shape, device=device, dtype=dtype),
                torch.zeros(shape, device=device, dtype=dtype),
            )
            for _ in range(a.num_layers)
        ]
        self.cos, self.sin = cos_sin_table(inverse_frequencies(a, length), length, device, dtype)

    def cache_bytes(self) -> int:
        return sum(k.numel() * k.element_size() * 2 for k, _ in self.caches)

    def move_slot(self, src: int, dst: int, length: int) -> None:
        """Copy a sequence's first `length` cached positions from slot src to slot dst."""
        for k, v in self.caches:
            k[dst, :, :length] = k[src, :, :length]
            v[dst, :, :length] = v[src, :, :length]

    def extend(
        self,
        tokens: torch.Tensor,
        *,
        first_slot: int = 0,
        pos0: int = 0,
        positions: torch.Tensor | None = None,
        kv_len: int | None = None,
        last: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Append tokens [b, t] to the sequences in slots first_slot..first_slot+b-1.

        Either all rows start at position `pos0`, or (t == 1) row i is at `positions[i]`; `kv_len`
        bounds the keys attended to (the caller knows it without asking the device). Returns
        float32 logits [b, t, vocab], or [b, vocab] at index `last[i]` of each row when given.
        """
        b, t = tokens.shape
        if kv_len is None:
            kv_len = pos0 + t
        step = Step(self, b, t, first_slot, pos0, positions, kv_len)
        x = self.model.embed_tokens(tokens)
        for layer, cache in zip(self.model.layers, self.caches, strict=True):
            x = layer(x, cache, step)
        if last is not None:
            x = x[torch.arange(b, device=x.device), last]
        logits: torch.Tensor = self.lm_head(self.model.norm(x))
        return logits.float()

    def forward(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """Rows in slots 0..b-1, all at positions pos..pos+t-1: logits [b, t, vocab]."""
        return self.extend(tokens, pos0=pos)
