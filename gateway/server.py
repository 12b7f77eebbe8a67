"""Assemble and run a gateway: store, registry, verifier, router, servicers, health, shutdown."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass

import grpc
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ccgw.gateway.auth import Authenticator
from ccgw.gateway.checkpointer import Checkpointer
from ccgw.gateway.collateral_cache import CollateralCache
from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.jobs import JobRouter
from ccgw.gateway.log_service import LogServicer
from ccgw.gateway.registry import Registry
from ccgw.gateway.service import GatewayServicer, WorkerLinkServicer
from ccgw.gateway.store.base import Store
from ccgw.gateway.store.factory import open_store
from ccgw.gateway.worker_link import WorkerLink
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import gateway_pb2_grpc as ggrpc
from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc
from ccgw.protos.ccgw.v1 import worker_pb2_grpc as wgrpc
from ccgw.verify import limits
from ccgw.verify import log_entries as le
from ccgw.verify.attestation.bundle import VerifiedWorker, verify_bundle
from ccgw.verify.attestation.policy import Policy, load_policy_file
from ccgw.verify.attestation.roots import RootStore

log = structlog.get_logger("gateway.server")

MESSAGE_BYTES_MAX = limits.SEALED_REQUEST_BYTES_MAX + 64 * limits.KIB


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def load_policy(config: GatewayConfig) -> tuple[Policy, RootStore]:
    policy = load_policy_file(config.policy_path) if config.policy_path else Policy()
    roots = RootStore.default()
    if config.allow_simulated_tee:
        if config.simulated_root_pem is None:
            raise ValueError("--allow-simulated-tee needs the simulated root certificate")
        policy = policy.allowing_simulated()
        roots = roots.with_simulated(config.simulated_root_pem)
        log.warning(
            "simulated_tee_allowed",
            warning="this gateway admits workers on SIMULATED TEE evidence: no hardware protection",
        )
    return policy, roots


@dataclass
class RunningGateway:
    server: grpc.aio.Server
    port: int
    store: Store
    registry: Registry
    router: JobRouter
    link: WorkerLink
    checkpointer: Checkpointer
    tasks: tuple[asyncio.Task[None], ...] = ()

    async def deposit(self, account: str, amount_micro: int, reference: str) -> None:
        """Credit an account with a deposit signed by this gateway's operator (log) key."""
        await self.store.append(le.deposit(self.checkpointer.key, account, amount_micro, reference))

    async def stop(self, grace_s: float | None = None) -> None:
        for t in self.tasks:
            t.cancel()
        await self.server.stop(grace_s)
        await self.store.close()


async def start_gateway(
    config: GatewayConfig,
    *,
    store: Store | None = None,
    policy: Policy | None = None,
    roots: RootStore | None = None,
) -> RunningGateway:
    base_policy, base_roots = load_policy(config)
    policy = policy or base_policy
    roots = roots or base_roots
    log_key = (
        load_pem_private_key(config.log_key_pem, None)
        if config.log_key_pem
        else Ed25519PrivateKey.generate()
    )
    if not isinstance(log_key, Ed25519PrivateKey):
        raise ValueError("the log key must be Ed25519")
    if store is None:
        store = await asyncio.to_thread(
            open_store,
            config.db_dsn or config.db_path,
            schema=config.db_schema,
            operator=log_key.public_key().public_bytes_raw(),
            create=config.db_create,
            pool_connections_max=config.limits.db_pool_connections_max,
            stale_hold_s=config.limits.job_deadline_s,
            write_batch_max=config.limits.db_write_batch_max,
        )
    initial = config.initial_prices
    if await store.ensure_schedule(lambda i: le.price_schedule(log_key, initial.with_from_index(i))):
        log.info("price_schedule_logged", schedule=le.schedule_json(config.initial_prices))
    released = await store.release_orphaned_holds()
    if released:
        log.warning("orphaned_holds_released", count=released)
    registry = Registry(config.limits.workers_max)

    collateral = CollateralCache(config.collateral_dir, config.limits.collateral_refresh_s)

    def verifier(bundle: cpb.EvidenceBundle, nonce: bytes) -> VerifiedWorker:
        return verify_bundle(
            bundle, policy, roots, _utcnow(), expected_nonce=nonce, collateral=collateral.current()
        )

    auth = Authenticator(config.auth_public_keys_pem, config.auth_audience)
    link = WorkerLink(config, registry, verifier, _utcnow, store)
    checkpointer = Checkpointer(config, store, log_key)
    router = JobRouter(config, registry, store, checkpointer)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
            ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
        ]
    )
    ggrpc.add_GatewayServicer_to_server(
        GatewayServicer(config, auth, registry, router, link, store, collateral), server
    )
    wgrpc.add_WorkerLinkServicer_to_server(WorkerLinkServicer(auth, link), server)
    lgrpc.add_TransparencyLogServicer_to_server(LogServicer(config, store, checkpointer), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.tls_cert_pem is not None and config.tls_key_pem is not None:
        creds = grpc.ssl_server_credentials([(config.tls_key_pem, config.tls_cert_pem)])
        port = server.add_secure_port(config.listen, creds)
    else:
        port = server.add_insecure_port(config.listen)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "gateway_started",
        port=port,
        tls=config.tls_cert_pem is not None,
        workers_max=config.limits.workers_max,
    )
    return RunningGateway(
        server=server,
        port=port,
        store=store,
        registry=registry,
        router=router,
        link=link,
        checkpointer=checkpointer,
        tasks=(asyncio.create_task(checkpointer.run()),),
    )
