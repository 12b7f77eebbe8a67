"""Settlement statements: per epoch (a range of log leaves ending at a signed checkpoint), per
provider totals derived from the receipts and the price schedules logged before them, signed with
the log key (compact JWS, EdDSA, typ "ccgw-settlement+jws"). Anyone holding the log entries
recomputes the same statement."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccgw.verify.errors import LogError
from ccgw.verify.ledger_rules import MemoryLedger
from ccgw.verify.log_entries import Entry, ReceiptBody, parse, schedule_json
from ccgw.verify.prices import PriceSchedule
from ccgw.verify.receipts import Receipt

SETTLEMENT_TYP = "ccgw-settlement+jws"


def totals(
    receipts: Iterable[tuple[int, Receipt]], schedule_at: Callable[[int], PriceSchedule | None]
) -> tuple[dict[str, dict[str, int]], int]:
    """Per provider {jobs, input_tokens, output_tokens, reward_micro}, and the network fee, for
    (log index, receipt) pairs priced by the schedule in force at each index."""
    out: dict[str, dict[str, int]] = {}
    fees = 0
    for index, r in receipts:
        schedule = schedule_at(index)
        if schedule is None:
            raise LogError(f"no price schedule is in force at {index}")
        cost = schedule.cost_micro(r.model, r.input_tokens, r.output_tokens)
        fee = schedule.fee_micro(cost)
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
    entries: Iterable[tuple[int, Entry]],
    schedules: Sequence[PriceSchedule],
) -> dict[str, Any]:
    """`entries`: the log's entries in [from_size, to_size); `schedules`: every schedule appended
    before to_size, in log order (the same list the auditor keeps)."""
    view = MemoryLedger(b"", schedules=list(schedules))
    receipts = []
    for index, e in entries:
        if e.kind == ReceiptBody.KIND:
            body = parse(e)
            assert isinstance(body, ReceiptBody)
            receipts.append((index, body.claims()))
    providers, fees = totals(receipts, view.schedule_at)
    in_force = {
        s for i in (from_size, *(x for x, _ in receipts)) if (s := view.schedule_at(i)) is not None
    }
    return {
        "origin": origin,
        "epoch": {"from_size": from_size, "to_size": to_size},
        "checkpoint": checkpoint_text,
        "prices": [schedule_json(s) for s in sorted(in_force, key=lambda s: s.from_index)],
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
