"""SIGTERM drain of a worker: running jobs finish with verified receipts, new jobs are refused
(the client may retry elsewhere), and the agent's run() returns; past the grace period the rest
are cancelled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from ccgw.client.errors import GatewayRefused
from ccgw.enclave.agent import WorkerAgent
from tests.support.cluster import cluster
from tests.support.fake_engine import EchoEngine


async def running(agent: WorkerAgent) -> None:
    """Until a job runs on the worker."""
    for _ in range(1000):
        if agent._tasks:
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("no job started")


async def test_drain_finishes_running_jobs_and_refuses_new_ones(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        agent = await c.add_worker({"echo": EchoEngine("echo", delay_s=0.05)})  # type: ignore[dict-item]
        await c.deposit("client:alice", 10_000_000)
        client = c.client()
        job = asyncio.create_task(
            client.complete("echo", prompt="a b c d e f g h", max_new_tokens=8)
        )
        await running(agent)
        drain = asyncio.create_task(agent.drain(grace_s=10))
        await asyncio.sleep(0)
        with pytest.raises(GatewayRefused) as refused:
            await client.complete("echo", prompt="late", max_new_tokens=2)
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        answer = await job
        assert answer.text == "h g f e d c b a " and answer.receipt is not None
        assert await drain is True
        await asyncio.wait_for(c.tasks[0], timeout=10)  # run() returned: no reconnect


async def test_drain_cancels_jobs_past_the_grace_period(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        agent = await c.add_worker({"echo": EchoEngine("echo", delay_s=1.0)})  # type: ignore[dict-item]
        await c.deposit("client:alice", 10_000_000)
        job = asyncio.create_task(c.client().complete("echo", prompt="a b c d e", max_new_tokens=5))
        await running(agent)
        assert await agent.drain(grace_s=0.2) is False
        with pytest.raises(GatewayRefused):
            await job
        await asyncio.wait_for(c.tasks[0], timeout=10)
