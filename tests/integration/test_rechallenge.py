"""The gateway re-challenges admitted workers on a schedule and evicts one whose evidence no
longer passes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ccgw.gateway.config import GatewayLimits
from ccgw.simtee import SimulatedSnpTee
from tests.support.cluster import cluster
from tests.support.fake_engine import EchoEngine


class SwitchableTee(SimulatedSnpTee):
    lying = False

    def attest(self, report_data: bytes):  # type: ignore[no-untyped-def]
        return super().attest(bytes(64) if self.lying else report_data)


async def test_worker_is_rechallenged_and_evicted_when_evidence_fails(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=GatewayLimits(rechallenge_interval_s=0.2)) as c:
        tee = SwitchableTee(c.vendor)
        agent = await c.add_worker({"echo": EchoEngine()}, tee=tee)
        await asyncio.sleep(0.7)  # several successful re-challenges
        assert c.gateway.registry.serving("echo")[0].worker_id == agent.worker_id
        tee.lying = True
        for _ in range(50):
            await asyncio.sleep(0.1)
            if not c.gateway.registry.serving("echo"):
                break
        assert c.gateway.registry.serving("echo") == []
