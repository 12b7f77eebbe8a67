"""Token selection for a whole batch in one pass on the device: greedy, temperature, top-k, top-p.

Randomness is counter-based: the uniform number a row draws at its n-th token is a hash of
(its 64-bit seed, n), computed with integer ops on the device. Compared with one torch.Generator
per request this gives (a) one set of kernels for the whole batch instead of one per request,
(b) no host↔device traffic or synchronisation to draw random numbers, and (c) a seeded request
yields the same tokens whether it runs alone or batched with others, on any device, because its
draws never depend on the other rows. The hash is lowbias32 (a well-mixed 32-bit integer hash)
applied three times; 24 bits of it make a float32 uniform in [0, 1). This is for sampling, not
for secrets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for int64 x in [0, 2**32), without ever overflowing int64."""
    lo, hi = x & 0xFFFF, x >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _M32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def uniforms(seed_lo: torch.Tensor, seed_hi: torch.Tensor, counter: torch.Tensor) -> torch.Tensor:
    """float32 in [0, 1), one per row, from int64 tensors holding 32-bit values."""
    h = _mix32(seed_lo ^ _mix32(seed_hi ^ _mix32((counter & _M32) ^ 0x9E3779B9)))
    return (h >> 8).to(torch.float32) * (1.0 / (1 << 24))


@dataclass
class BatchSampling:
    """Per-row sampling parameters of the current batch, resident on the device.

    `sampled` / `filtered` are host-side facts about the batch (any row with temperature > 0,
    any with top-k or top-p) that let an all-greedy batch skip the softmax and an unfiltered one
    skip the sort, without asking the device."""

    temperature: torch.Tensor  # [n] float32, 0 = greedy
    top_p: torch.Tensor  # [n] float32 in (0, 1]
    top_k: torch.Tensor  # [n] int64, 0 = off
    seed_lo: torch.Tensor  # [n] int64, 32-bit values
    seed_hi: torch.Tensor  # [n] int64
    counter: torch.Tensor  # [n] int64, tokens drawn so far by each row
    sampled: bool
    filtered: bool


def select(logits: torch.Tensor, s: BatchSampling) -> torch.Tensor:
    """logits [n, vocab] float32 → token ids [n] int64, on the same device; advances counters."""
    greedy = logits.argmax(-1)
    if not s.sampled:
        return greedy
    vocab = logits.shape[-1]
    scaled = logits / s.temperature.clamp(min=1e-6)[:, None]
    order: torch.Tensor | None = None
    if s.filtered:
        scaled, order = scaled.sort(-1, descending=True)
        ranks = torch.arange(vocab, device=logits.device)[None, :]
        k = torch.where(s.top_k > 0, s.top_k, vocab)[:, None]
        scaled = scaled.masked_fill(ranks >= k, float("-inf"))
    probs = torch.softmax(scaled, dim=-1)
    u = uniforms(s.seed_lo, s.seed_hi, s.counter)[:, None]
    if s.filtered:
        before = probs.cumsum(-1) - probs  # mass of the better tokens; the best always stays
        probs = probs.masked_fill(before > s.top_p[:, None], 0.0)
    picked = _draw(probs, u, vocab)
    if order is not None:
        picked = order.gather(-1, picked[:, None])[:, 0]
        # A row without top-k/top-p draws over vocabulary order, as it does in a batch with no
        # filtered row: its tokens must not depend on the other rows (module doc, (c)).
        plain = (s.top_k <= 0) & (s.top_p >= 1)
        unsorted = _draw(
            torch.softmax(logits / s.temperature.clamp(min=1e-6)[:, None], -1), u, vocab
        )
        picked = torch.where(plain, unsorted, picked)
    s.counter += 1
    return torch.where(s.temperature > 0, picked, greedy)


def _draw(probs: torch.Tensor, u: torch.Tensor, vocab: int) -> torch.Tensor:
    """Index of the token whose cumulative interval holds u · total, per row."""
    cum = probs.cumsum(-1)
    return (cum <= u * cum[:, -1:]).sum(-1).clamp(max=vocab - 1)
