"""A real gateway (grpc.aio on 127.0.0.1:0, SQLite in a temp dir) and real worker agents on the
simulated TEE, for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccgw.client.releases import LogIdentity, ReleaseTrust
from ccgw.client.sdk import Client, ClientLimits
from ccgw.enclave.agent import WorkerAgent
from ccgw.enclave.config import WorkerConfig, WorkerLimits
from ccgw.enclave.engine import Engine
from ccgw.gateway.auth import issue_token
from ccgw.gateway.config import GatewayConfig, GatewayLimits
from ccgw.gateway.server import RunningGateway, start_gateway
from ccgw.keys import public_pem
from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
from ccgw.protos.ccgw.v1 import gateway_pb2_grpc as ggrpc
from ccgw.simtee import SimulatedSnpTee, SimulatedVendor
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.release.manifest import (
    LaunchEntry,
    ReleaseKey,
    ReleaseManifest,
    SignedManifest,
    SignedRevocation,
    sign_manifest,
)


@dataclass
class Cluster:
    gateway: RunningGateway
    auth_key: Ed25519PrivateKey
    vendor: SimulatedVendor
    workers: list[WorkerAgent] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    # The release key of this cluster (ADR 10): add_worker publishes a release covering each
    # worker's measurement and models unless told not to, so tests run the default, released path.
    release_key: Ed25519PrivateKey | None = None
    log: LogIdentity | None = None
    tls: bool = False  # the gateway listens with TLS (this helper's channels are plaintext)
    published: list[SignedManifest] = field(default_factory=list)

    def release_trust(self) -> ReleaseTrust:
        assert self.release_key is not None and self.log is not None
        return ReleaseTrust((ReleaseKey(self.release_key.public_key()),), self.log)

    def release_for(
        self,
        engines: Mapping[str, Engine],
        measurement: bytes = bytes(48),
        version: str = "",
        valid: tuple[dt.datetime, dt.datetime] | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> SignedManifest:
        """A signed release allowing the simulated measurement and these engines' models."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start, end = valid or (now - dt.timedelta(days=1), now + dt.timedelta(days=30))
        m = ReleaseManifest(
            version or f"test-{len(self.published) + 1}",
            start,
            end,
            (LaunchEntry("sev-snp", measurement.hex(), 1, "simulated"),),
            {name: e.model_sha256.hex() for name, e in engines.items()},
        )
        signer = key or self.release_key
        assert signer is not None
        return sign_manifest(m, signer)

    def trust_args(self, directory: Path) -> list[str]:
        """CLI flags following this cluster's releases (key files written to `directory`)."""
        assert self.release_key is not None and self.log is not None
        (directory / "release.pub").write_bytes(public_pem(self.release_key))
        log_pub = Ed25519PublicKey.from_public_bytes(self.log.public_raw)
        (directory / "log.pub").write_bytes(
            log_pub.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return [
            "--release-key",
            str(directory / "release.pub"),
            "--log-pubkey",
            str(directory / "log.pub"),
        ]

    async def publish(self, document: SignedManifest | SignedRevocation, rpc: bool = True) -> int:
        """Log a signed release or revocation through the admin RPC (or, `rpc=False`, in
        process: a TLS gateway); its log index."""
        if not rpc:
            done = await self.gateway.publish_release(document.to_bytes())
            if isinstance(document, SignedManifest):
                self.published.append(document)
            return done.result.log_index
        channel = grpc.aio.insecure_channel(self.address)
        self.channels.append(channel)
        stub = ggrpc.GatewayStub(channel)
        resp = await stub.PublishRelease(
            gpb.PublishReleaseRequest(document=document.to_bytes()),
            metadata=[("authorization", f"Bearer {self.token('admin:ops', 'admin')}")],
        )
        if isinstance(document, SignedManifest):
            self.published.append(document)
        return int(resp.log_index)

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
        release: bool = True,
    ) -> WorkerAgent:
        """`release`: publish a release for this worker first (when the cluster has a release
        key and no published release covers its models already)."""
        if release and self.release_key is not None:
            want = {n: e.model_sha256.hex() for n, e in engines.items()}
            measurement = getattr(tee, "measurement", bytes(48)).hex()
            covered = any(
                all(d.manifest.models.get(n) == h for n, h in want.items())
                and any(e.measurement == measurement for e in d.manifest.launch)
                for d in self.published
            )
            if not covered:
                await self.publish(self.release_for(engines, bytes.fromhex(measurement)))
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
        releases: ReleaseTrust | bool | None = True,
    ) -> Client:
        """A client following this cluster's releases (`releases=True`, the default, when the
        cluster has a release key), or the given trust, or none (False: the policy must pin the
        software or accept unreleased software)."""
        trust: ReleaseTrust | None
        if releases is True:
            trust = self.release_trust() if self.release_key is not None else None
        else:
            trust = releases or None
        if trust is None and policy is None:
            policy = dataclasses.replace(Policy().allowing_simulated(), accept_unreleased=True)
        roots = RootStore.default().with_simulated(self.vendor.root_pem())
        channel = grpc.aio.insecure_channel(self.address)
        self.channels.append(channel)
        return Client(
            channel,
            self.token(account, "client"),
            policy or Policy().allowing_simulated(),
            roots,
            limits or ClientLimits(releases_refresh_s=0.0),
            releases=trust,
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
    releases: bool = True,
    verifiers: Mapping[str, Any] | None = None,
    **cfg: Any,
) -> AsyncIterator[Cluster]:
    """A gateway on loopback. `releases` (default): the gateway trusts a fresh release key and
    workers get a release published for them (the default, released path); False: the gateway
    accepts unreleased software (--accept-unreleased-software), for tests about other things."""
    key = Ed25519PrivateKey.generate()
    v = vendor()
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    release_key = Ed25519PrivateKey.generate() if releases else None
    if release_key is not None:
        cfg.setdefault("release_keys_pem", (public_pem(release_key),))
    elif "policy_path" not in cfg:
        cfg.setdefault("accept_unreleased_software", True)
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
    c = Cluster(
        gateway=gw,
        auth_key=key,
        vendor=v,
        release_key=release_key,
        log=LogIdentity(config.log_key_name, gw.checkpointer.public_raw, config.log_origin),
        tls=config.tls_cert_pem is not None,
    )
    try:
        yield c
    finally:
        await c.close()
