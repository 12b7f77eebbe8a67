"""Settlement statements: per epoch (a range of log leaves ending at a signed checkpoint), per
provider totals derived from the receipts and the prices, signed with the log key (compact JWS,
EdDSA, typ "ccgw-settlement+jws"). Anyone holding the log entries recomputes the same statement."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccgw.verify.errors import LogError
from ccgw.verify.ledger_rules import cost_micro, fee_micro
from ccgw.verify.receipts import Receipt, parse_claims

SETTLEMENT_TYP = "ccgw-settlement+jws"


@dataclass(frozen=True)
class Prices:
    input_per_1k_micro: int
    output_per_1k_micro: int
    fee_bps: int


def totals(receipts: Iterable[Receipt], prices: Prices) -> tuple[dict[str, dict[str, int]], int]:
    """Per provider {jobs, input_tokens, output_tokens, reward_micro}, and the network fee."""
    out: dict[str, dict[str, int]] = {}
    fees = 0
    for r in receipts:
        cost = cost_micro(
            r.input_tokens, r.output_tokens, prices.input_per_1k_micro, prices.output_per_1k_micro
        )
        fee = fee_micro(cost, prices.fee_bps)
        t = out.setdefault(
            r.provider, {"jobs": 0, "input_tokens": 0, "output_tokens": 0, "reward_micro": 0}
        )
        t["jobs"] += 1
        t["input_tokens"] += r.input_tokens
        t["output_tokens"] += r.output_tokens
        t["reward_micro"] += cost - fee
        fees += fee
    return out, fees


def statement(
    *,
    origin: str,
    from_size: int,
    to_size: int,
    checkpoint_text: str,
    receipt_jws: list[str],
    prices: Prices,
) -> dict[str, Any]:
    receipts = [
        parse_claims(jwt.api_jws.decode(j, options={"verify_signature": False}))
        for j in receipt_jws
    ]
    providers, fees = totals(receipts, prices)
    return {
        "origin": origin,
        "epoch": {"from_size": from_size, "to_size": to_size},
        "checkpoint": checkpoint_text,
        "prices": prices.__dict__,
        "providers": providers,
        "network_fee_micro": fees,
    }


def sign(stmt: dict[str, Any], key: Ed25519PrivateKey) -> str:
    body = json.dumps(stmt, sort_keys=True, separators=(",", ":")).encode()
    return jwt.api_jws.encode(body, key, algorithm="EdDSA", headers={"typ": SETTLEMENT_TYP})


def verify(jws: str, public_raw: bytes) -> dict[str, Any]:
    try:
        if jwt.get_unverified_header(jws).get("typ") != SETTLEMENT_TYP:
            raise LogError("not a settlement statement")
        body = jwt.api_jws.decode(
            jws, Ed25519PublicKey.from_public_bytes(public_raw), algorithms=["EdDSA"]
        )
    except jwt.InvalidTokenError as exc:
        raise LogError(f"settlement signature does not verify: {exc}") from exc
    data = json.loads(body)
    if not isinstance(data, dict):
        raise LogError("settlement body is not an object")
    return data
