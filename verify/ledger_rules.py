"""Pure reward arithmetic, shared by the gateway (to post) and the auditor (to recompute).

cost_micro = ceil(input_tokens * in_price / 1000) + ceil(output_tokens * out_price / 1000)
fee_micro  = cost_micro * fee_bps // 10000  (to the network account); the provider gets the rest.
"""

from __future__ import annotations


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def cost_micro(input_tokens: int, output_tokens: int, in_per_1k: int, out_per_1k: int) -> int:
    if min(input_tokens, output_tokens, in_per_1k, out_per_1k) < 0:
        raise ValueError("token counts and prices must be non-negative")
    return _ceil_div(input_tokens * in_per_1k, 1000) + _ceil_div(output_tokens * out_per_1k, 1000)


def fee_micro(cost: int, fee_bps: int) -> int:
    if not 0 <= fee_bps <= 10_000:
        raise ValueError("fee_bps must be within 0..10000")
    return cost * fee_bps // 10_000
