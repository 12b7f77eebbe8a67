"""Rotary position embeddings: the inverse frequencies of each supported scaling variant.

Kept apart from the model because this is where checkpoints of the same family differ (Llama 3.1
`llama3` scaling, `linear` position interpolation, `dynamic` NTK) and where a silent mistake shows
up only as slightly worse text; the parity tests compare each variant with transformers.
"""

from __future__ import annotations

import math

import torch

from ccgw.enclave.engine.config import ModelArgs


def inverse_frequencies(args: ModelArgs, context_tokens_max: int) -> torch.Tensor:
    """[head_dim // 2] float32 inverse frequencies for sequences up to `context_tokens_max`.

    `dynamic` (NTK-aware) scaling changes the base with the sequence length. transformers
    recomputes it per forward pass from the longest sequence seen; an engine that batches many
    sequences in one cache cannot do that without re-rotating cached keys, so we fix the base for
    the engine's whole context: identical to transformers while every sequence stays within the
    trained context (the usual case), the standard static-NTK approximation beyond it.
    """
    r = args.rope
    dim = args.head_dim
    inv = 1.0 / (r.theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    if r.kind == "linear":
        inv = inv / r.factor
    elif r.kind == "dynamic":
        trained = args.max_position
        if context_tokens_max > trained:
            base = r.theta * ((r.factor * context_tokens_max / trained) - (r.factor - 1)) ** (
                dim / (dim - 2)
            )
            inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    elif r.kind == "llama3":
        inv = _llama3(inv, r.factor, r.low_freq_factor, r.high_freq_factor, r.original_max_position)
    return inv.float()


def _llama3(inv: torch.Tensor, factor: float, low: float, high: float, old: int) -> torch.Tensor:
    """Llama 3.1: long wavelengths divided by `factor`, short ones kept, a smooth ramp between."""
    wavelen = 2 * math.pi / inv
    smooth = (old / wavelen - low) / (high - low)
    ramp = (1 - smooth) * inv / factor + smooth * inv
    out = torch.where(wavelen > old / low, inv / factor, inv)
    is_mid = (wavelen <= old / low) & (wavelen >= old / high)
    return torch.where(is_mid, ramp, out)


def cos_sin_table(
    inv_freq: torch.Tensor, length: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin for positions 0..length-1, [length, head_dim] each (HF's rotate-half layout),
    computed once at start so a decode step only gathers rows."""
    pos = torch.arange(length, dtype=torch.float32)
    freqs = torch.outer(pos, inv_freq.float().cpu())
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(device, dtype), emb.sin().to(device, dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [b, heads, t, head_dim]; cos/sin [b, 1, t, head_dim]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
