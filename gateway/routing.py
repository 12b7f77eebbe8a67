"""Which workers a client should use, best first (the client seals to one of them, so routing is
the ranking the gateway offers plus the admission checks in gateway.jobs).

A worker is eligible when it serves the model, is not draining, closed or suspended (by a
reproduced dispute, ADR 14), and its evidence was
verified for a gateway nonce within `attestation_max_age_s`. Eligible workers are ordered by:
room left (a full worker last), the region hint (same region first), load (jobs in flight over
capacity), then admission order (the sort is stable over the registry's order). Prices come from
the one logged schedule (ADR 12) and are the same for every worker of a model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.registry import WorkerSession


def is_fresh(session: WorkerSession, max_age_s: float, now_s: float) -> bool:
    return now_s - session.attested_at_s <= max_age_s


def eligible(session: WorkerSession, model: str, max_age_s: float, now_s: float) -> bool:
    return (
        not session.closed
        and not session.draining
        and not session.suspended
        and (not model or model in session.verified.models)
        and is_fresh(session, max_age_s, now_s)
    )


def load(session: WorkerSession) -> float:
    return len(session.jobs) / max(1, session.capacity)


def rank(
    sessions: Iterable[WorkerSession],
    model: str,
    config: GatewayConfig,
    region: str = "",
    clock: Callable[[], float] = time.monotonic,
) -> list[WorkerSession]:
    now_s = clock()
    max_age_s = config.limits.attestation_max_age_s
    # Prices are one logged schedule per model (ADR 12): the same for every worker of a model,
    # so they do not order workers.

    def key(s: WorkerSession) -> tuple[bool, bool, float]:
        return (len(s.jobs) >= s.capacity, bool(region) and s.region != region, load(s))

    return sorted((s for s in sessions if eligible(s, model, max_age_s, now_s)), key=key)
