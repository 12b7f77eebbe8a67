"""Suspension from routing (ADR 14): a suspended worker is offered to no client, refused if it
connects again, and a restarted gateway takes suspensions back from its store."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.disputes import DisputeDesk
from ccgw.gateway.errors import BadRequest, PermissionDenied
from ccgw.gateway.registry import Registry, WorkerSession


def _session(wid: str) -> WorkerSession:
    verified: Any = SimpleNamespace(models={"m": b""})
    return WorkerSession(wid, "provider:p", verified, None, "", 4)  # type: ignore[arg-type]


class _Store:
    async def unique_keys(self, namespace: str) -> list[str]:
        return ["w-bad"] if namespace == "suspended_worker" else []


def test_suspended_workers_are_not_routed_nor_readmitted_even_after_a_restart() -> None:
    reg = Registry(10)
    reg.add(_session("w-bad"))
    reg.add(_session("w-good"))
    reg.suspend("w-bad")
    assert [s.worker_id for s in reg.serving("m")] == ["w-good"]
    reg.remove(reg.get("w-bad"))
    with pytest.raises(PermissionDenied, match="suspended"):
        reg.add(_session("w-bad"))
    fresh = Registry(10)  # a restarted gateway
    desk = DisputeDesk(
        _Store(),  # type: ignore[arg-type]
        fresh,
        Ed25519PrivateKey.generate(),
        lambda b, t: None,  # type: ignore[arg-type,return-value]
        {},
    )
    assert asyncio.run(desk.load_suspensions()) == 1
    with pytest.raises(PermissionDenied):
        fresh.add(_session("w-bad"))


def test_unparsable_evidence_is_a_bad_request() -> None:
    desk = DisputeDesk(
        _Store(),  # type: ignore[arg-type]
        Registry(1),
        Ed25519PrivateKey.generate(),
        lambda b, t: None,  # type: ignore[arg-type,return-value]
        {},
    )
    for raw in (b"not json", b'{"v": 9}', b"[]"):
        with pytest.raises(BadRequest):
            asyncio.run(desk.file("client:c", False, raw))
