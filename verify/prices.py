"""The one price type: a schedule of per-model prices (µtokens per 1,000 input and output tokens)
and the network's fee share, in force from a log index on (ADR 12). The gateway holds and posts
with it, settlement statements total with it, the auditor recomputes with it.

cost_micro = ceil(input_tokens * in_per_1k / 1000) + ceil(output_tokens * out_per_1k / 1000)
fee_micro  = cost_micro * fee_bps // 10000  (to `fee_account`); the provider gets the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ccgw.verify import limits
from ccgw.verify.errors import MalformedError

BPS_MAX = 10_000


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Price:
    input_per_1k_micro: int
    output_per_1k_micro: int

    def __post_init__(self) -> None:
        for v in (self.input_per_1k_micro, self.output_per_1k_micro):
            if type(v) is not int or not 0 <= v <= limits.PRICE_PER_1K_MICRO_MAX:
                raise MalformedError(f"prices must be within 0..{limits.PRICE_PER_1K_MICRO_MAX}")

    def cost_micro(self, input_tokens: int, output_tokens: int) -> int:
        if min(input_tokens, output_tokens) < 0:
            raise MalformedError("token counts must be non-negative")
        return _ceil_div(input_tokens * self.input_per_1k_micro, 1000) + _ceil_div(
            output_tokens * self.output_per_1k_micro, 1000
        )


@dataclass(frozen=True)
class PriceSchedule:
    """`models` is sorted by name; a model it does not name is priced at `default`."""

    default: Price = Price(1_000, 2_000)
    models: tuple[tuple[str, Price], ...] = ()
    fee_bps: int = 500
    fee_account: str = "network:fee"
    from_index: int = 0
    _by_model: dict[str, Price] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if type(self.fee_bps) is not int or not 0 <= self.fee_bps <= BPS_MAX:
            raise MalformedError(f"fee_bps must be within 0..{BPS_MAX}")
        if type(self.from_index) is not int or not 0 <= self.from_index <= limits.U63_MAX:
            raise MalformedError("from_index out of range")
        if len(self.models) > limits.PRICED_MODELS_MAX:
            raise MalformedError(f"at most {limits.PRICED_MODELS_MAX} priced models")
        names = [m for m, _ in self.models]
        if names != sorted(set(names)):
            raise MalformedError("priced models must be unique and sorted by name")
        object.__setattr__(self, "_by_model", dict(self.models))

    def price(self, model: str) -> Price:
        return self._by_model.get(model, self.default)

    def cost_micro(self, model: str, input_tokens: int, output_tokens: int) -> int:
        return self.price(model).cost_micro(input_tokens, output_tokens)

    def fee_micro(self, cost_micro: int) -> int:
        return cost_micro * self.fee_bps // BPS_MAX

    def with_from_index(self, index: int) -> PriceSchedule:
        return PriceSchedule(self.default, self.models, self.fee_bps, self.fee_account, index)


DEFAULT_SCHEDULE = PriceSchedule()
