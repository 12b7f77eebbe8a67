"""A real gateway (grpc.aio on 127.0.0.1:0, SQLite in a temp dir) and real worker agents on the
simulated TEE, for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.client.sdk import Client, ClientLimits
from ccgw.enclave.agent import WorkerAgent
from ccgw.enclave.config import WorkerConfig, WorkerLimits
from ccgw.enclave.engine import Engine
from ccgw.gateway.auth import issue_token
from ccgw.gateway.config import GatewayConfig, GatewayLimits
from ccgw.gateway.server import RunningGateway, start_gateway
from ccgw.simtee import SimulatedSnpTee, SimulatedVendor
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore


@dataclass
class Cluster:
    gateway: RunningGateway
    auth_key: Ed25519PrivateKey
    vendor: SimulatedVendor
    workers: list[WorkerAgent] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def gateway_router(self) -> Any:
        return self.gateway.router

    def gateway_link(self) -> Any:
        return self.gateway.link

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gateway.port}"

    def token(self, sub: str, role: str) -> str:
        return issue_token(self.auth_key, sub=sub, role=role)

    async def add_worker(
        self,
        engines: Mapping[str, Engine],
        provider: str = "provider:p1",
        limits: WorkerLimits | None = None,
        tee: Any = None,
    ) -> WorkerAgent:
        config = WorkerConfig(
            gateway=self.address,
            provider_token=self.token(provider, "provider"),
            models=(),
            limits=limits or WorkerLimits(reconnect_attempts_max=1),
        )
        agent = WorkerAgent(config, engines, tee or SimulatedSnpTee(self.vendor))
        self.workers.append(agent)
        task = asyncio.create_task(agent.run())
        self.tasks.append(task)
        admitted = asyncio.create_task(agent.admitted.wait())
        await asyncio.wait({task, admitted}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            admitted.cancel()
            task.result()  # raises the agent's error (e.g. PERMISSION_DENIED)
            raise RuntimeError("worker agent stopped before admission")
        if not admitted.done():
            raise TimeoutError("worker was not admitted within 10 s")
        return agent

    def client(
        self,
        account: str = "client:alice",
        policy: Policy | None = None,
        limits: ClientLimits | None = None,
    ) -> Client:
        roots = RootStore.default().with_simulated(self.vendor.root_pem())
        channel = grpc.aio.insecure_channel(self.address)
        self.channels.append(channel)
        return Client(
            channel,
            self.token(account, "client"),
            policy or Policy().allowing_simulated(),
            roots,
            limits or ClientLimits(),
        )

    async def deposit(self, account: str, amount_micro: int) -> None:
        await self.gateway.deposit(
            account, amount_micro, f"test-deposit-{account}-{time.time_ns()}"
        )

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for c in self.channels:
            await c.close()
        await self.gateway.stop(0)


_VENDOR: SimulatedVendor | None = None


def vendor() -> SimulatedVendor:
    global _VENDOR
    if _VENDOR is None:
        _VENDOR = SimulatedVendor.generate()
    return _VENDOR


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path,
    limits: GatewayLimits | None = None,
    verifiers: Mapping[str, Any] | None = None,
    **cfg: Any,
) -> AsyncIterator[Cluster]:
    key = Ed25519PrivateKey.generate()
    v = vendor()
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    config = GatewayConfig(
        listen="127.0.0.1:0",
        db_path=tmp_path / "gw.sqlite3",
        db_create=True,
        auth_public_keys_pem=(pub,),
        allow_simulated_tee=True,
        simulated_root_pem=v.root_pem(),
        limits=limits or GatewayLimits(),
        **cfg,
    )
    gw = await start_gateway(config, verifiers=verifiers)
    c = Cluster(gateway=gw, auth_key=key, vendor=v)
    try:
        yield c
    finally:
        await c.close()
