"""Per-account quotas: a token bucket per account (rate and burst) and a cap on jobs in flight.

Buckets are kept for at most `accounts_max` accounts (least recently used dropped: an account
that comes back starts with a full bucket, so the bound costs at most one burst per eviction).
Exceeding a quota is QuotaExceeded (RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from ccgw.gateway.errors import QuotaExceeded


class RateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        accounts_max: int,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate, self._burst, self._max = rate_per_s, float(burst), accounts_max
        self._what, self._clock = what, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def take(self, account: str) -> None:
        now = self._clock()
        tokens, at = self._buckets.pop(account, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[account] = (tokens, now)
            raise QuotaExceeded(
                f"{account} exceeds its {self._what} rate ({self._rate:g}/s, burst {self._burst:g})"
            )
        self._buckets[account] = (tokens - 1.0, now)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)


class InFlightQuota:
    def __init__(self, per_account_max: int) -> None:
        self._max = per_account_max
        self._counts: dict[str, int] = {}

    def acquire(self, account: str) -> None:
        n = self._counts.get(account, 0)
        if n >= self._max:
            raise QuotaExceeded(f"{account} has {self._max} jobs in flight (its quota)")
        self._counts[account] = n + 1

    def release(self, account: str) -> None:
        n = self._counts.get(account, 0) - 1
        if n > 0:
            self._counts[account] = n
        else:
            self._counts.pop(account, None)

    def __len__(self) -> int:
        return len(self._counts)
