"""Export a signed settlement statement for an epoch of the log (admin)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.errors import BadRequest
from ccgw.gateway.store.base import Store
from ccgw.verify import settlement


async def export(
    store: Store,
    config: GatewayConfig,
    key: Ed25519PrivateKey,
    from_size: int,
    to_size: int,
    model: str = "",
) -> str:
    latest = await store.latest_checkpoint()
    if latest is None or latest[0] != to_size:
        raise BadRequest(
            f"an epoch must end at the latest signed checkpoint ({latest[0] if latest else 'none'})"
        )
    if not 0 <= from_size <= to_size:
        raise BadRequest("need 0 <= from <= to")
    entries = await store.entries(from_size, to_size)
    p = config.price(model)
    stmt = settlement.statement(
        origin=config.log_origin,
        from_size=from_size,
        to_size=to_size,
        checkpoint_text=latest[1],
        receipt_jws=[e.receipt_jws for e in entries],
        prices=settlement.Prices(p.input_per_1k_micro, p.output_per_1k_micro, config.fee_bps),
    )
    return settlement.sign(stmt, key)
