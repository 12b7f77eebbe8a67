"""Export a signed settlement statement for an epoch of the log (admin): per-provider totals of the
receipt entries in [from_size, to_size), priced by the schedules in the log."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.errors import BadRequest
from ccgw.gateway.store.base import Store
from ccgw.verify import settlement

PAGE_ENTRIES = 1_000


async def export(
    store: Store, key: Ed25519PrivateKey, origin: str, from_size: int, to_size: int
) -> str:
    latest = await store.latest_checkpoint()
    if latest is None or latest[0] != to_size:
        raise BadRequest(
            f"an epoch must end at the latest signed checkpoint ({latest[0] if latest else 'none'})"
        )
    if not 0 <= from_size <= to_size:
        raise BadRequest("need 0 <= from <= to")
    entries = []
    for start in range(from_size, to_size, PAGE_ENTRIES):
        rows = await store.entries(start, min(start + PAGE_ENTRIES, to_size))
        entries += [(e.index, e.entry) for e in rows]
    stmt = settlement.statement(
        origin=origin,
        from_size=from_size,
        to_size=to_size,
        checkpoint_text=latest[1],
        entries=entries,
        schedules=await store.schedules(),
    )
    return settlement.sign(stmt, key)
