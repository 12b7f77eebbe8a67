"""The whole path on loopback: real gateway, real worker agent on the simulated TEE, real client."""

from __future__ import annotations

from pathlib import Path

from protos.ccgw.v1 import common_pb2 as cpb
from tests.support.cluster import cluster
from tests.support.fake_engine import EchoEngine


async def test_happy_path_end_to_end(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 1_000_000)
        client = c.client()
        answer = await client.complete("echo", prompt="one two three", max_new_tokens=8)
        assert answer.text == "three two one "
        assert answer.receipt is not None
        assert answer.receipt.output_tokens == 3 and answer.receipt.input_tokens == 3
        assert answer.log_index == 0
        provider = await c.gateway.store.balance("provider:p1")
        alice = await c.gateway.store.balance("client:alice")
        assert provider[0] > 0
        assert alice == (1_000_000 - provider[0] - (await c.gateway.store.balance("network:fee"))[0], 0)
