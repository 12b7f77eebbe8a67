"""Token selection: greedy, or temperature with top-k and top-p, from a per-request generator
(seeded requests are reproducible on the same hardware)."""

from __future__ import annotations

import torch


def select(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gen: torch.Generator
) -> torch.Tensor:
    """logits [vocab] float32 → a 0-dim token id tensor (stays on the device)."""
    if temperature <= 0:
        return logits.argmax()
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if 0 < top_p < 1:
        sorted_p, order = probs.sort(descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
        probs = probs / probs.sum()
    return torch.multinomial(probs, 1, generator=gen)[0]
