"""A worker that fails before answering makes the client retry on another worker under the same
job id; the client is charged once, only the worker that answered is paid."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from ccgw.enclave.engine import Finished, GenerationRequest, TextDelta
from ccgw.enclave.errors import EngineError
from tests.support.cluster import cluster
from tests.support.fake_engine import EchoEngine


class BrokenEngine(EchoEngine):
    async def generate(self, req: GenerationRequest) -> AsyncIterator[TextDelta | Finished]:
        raise EngineError("GPU fell off the bus")
        yield  # pragma: no cover - makes this an async generator


async def test_retry_on_another_worker_charges_once(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        broken = await c.add_worker({"echo": BrokenEngine()}, provider="provider:broken")
        good = await c.add_worker({"echo": EchoEngine()}, provider="provider:good")
        await c.deposit("client:alice", 1_000_000)
        client = c.client()
        order = [w.worker_id for w in await client.workers("echo")]
        assert order[0] == broken.worker_id  # the broken worker is tried first
        answer = await client.complete("echo", prompt="x y")
        assert answer.worker_id == good.worker_id and answer.text == "y x "
        paid_good = (await c.gateway.store.balance("provider:good"))[0]
        fee = (await c.gateway.store.balance("network:fee"))[0]
        assert paid_good > 0
        assert await c.gateway.store.balance("provider:broken") == (0, 0)
        assert await c.gateway.store.balance("client:alice") == (1_000_000 - paid_good - fee, 0)
