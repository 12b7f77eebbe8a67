"""Assemble and run a gateway: store, registry, verifier, router, servicers, health, reflection,
metrics, shutdown.

Shutdown order: every service reports NOT_SERVING (load balancers stop sending), the router takes
no new job and the jobs in flight get `shutdown_grace_s` to finish, then the server stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ccgw.gateway.auth import Authenticator
from ccgw.gateway.checkpointer import Checkpointer
from ccgw.gateway.collateral_cache import CollateralCache
from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.disputes import DisputeDesk, Scorer
from ccgw.gateway.jobs import JobRouter
from ccgw.gateway.log_service import LogServicer
from ccgw.gateway.metrics import GatewayMetrics, serve_metrics
from ccgw.gateway.registry import Registry
from ccgw.gateway.releases import GatewayReleases, Published, load_keys
from ccgw.gateway.rpc import add_service, internal_errors
from ccgw.gateway.service import GatewayServicer, WorkerLinkServicer
from ccgw.gateway.store.base import Store
from ccgw.gateway.store.factory import open_store
from ccgw.gateway.worker_link import WorkerLink
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.verify import limits
from ccgw.verify import log_entries as le
from ccgw.verify.attestation.bundle import VerifiedWorker, verify_bundle
from ccgw.verify.attestation.policy import Policy, load_policy_file
from ccgw.verify.attestation.roots import RootStore

log = structlog.get_logger("gateway.server")

MESSAGE_BYTES_MAX = (
    max(limits.SEALED_REQUEST_BYTES_MAX, limits.DISPUTE_FILE_BYTES_MAX) + 64 * limits.KIB
)
STOP_SETTLE_S = 2.0  # after the server stopped: time for cancelled jobs to release their holds


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


SERVICES = (
    gpb.DESCRIPTOR.services_by_name["Gateway"],
    wpb.DESCRIPTOR.services_by_name["WorkerLink"],
    lpb.DESCRIPTOR.services_by_name["TransparencyLog"],
)


@dataclass
class RunningGateway:
    server: grpc.aio.Server
    port: int
    store: Store
    registry: Registry
    router: JobRouter
    link: WorkerLink
    checkpointer: Checkpointer
    health: health.aio.HealthServicer  # type: ignore[name-defined]
    metrics: GatewayMetrics
    releases: GatewayReleases
    metrics_server: asyncio.Server | None = None
    tasks: tuple[asyncio.Task[None], ...] = ()

    async def publish_release(self, document: bytes) -> Published:
        """Log a signed release or revocation (as the PublishRelease RPC does)."""
        return await self.releases.publish(self.store, document)

    async def deposit(self, account: str, amount_micro: int, reference: str) -> None:
        """Credit an account with a deposit signed by this gateway's operator (log) key."""
        await self.store.append(le.deposit(self.checkpointer.key, account, amount_micro, reference))

    @property
    def metrics_port(self) -> int | None:
        if self.metrics_server is None:
            return None
        return int(self.metrics_server.sockets[0].getsockname()[1])

    async def stop(self, grace_s: float | None = None) -> None:
        """NOT_SERVING first, then let jobs in flight finish (up to grace_s), then stop."""
        await self.health.enter_graceful_shutdown()
        left = await self.router.drain(grace_s or 0.0)
        if left:
            log.warning("shutdown_with_jobs_in_flight", jobs=left)
        for t in self.tasks:
            t.cancel()
        if self.metrics_server is not None:
            self.metrics_server.close()
        await self.server.stop(grace_s)
        # The jobs cancelled by the stop end (and release their holds) before the store closes.
        await self.router.drain(STOP_SETTLE_S)
        await self.router.released()
        await self.store.close()


async def start_gateway(
    config: GatewayConfig,
    *,
    store: Store | None = None,
    policy: Policy | None = None,
    roots: RootStore | None = None,
    verifiers: Mapping[str, Scorer] | None = None,
) -> RunningGateway:
    """`verifiers`: scoring engines by model digest (hex) that re-check disputes (ADR 14; the
    CLI loads them with `--verifier-model`, since the gateway package never imports torch)."""
    base_policy, base_roots = load_policy(config)
    if (
        policy is None
        and not config.release_keys_pem
        and config.policy_path is None
        and not config.accept_unreleased_software
    ):
        raise ValueError(
            "no release key: pass --release-key (workers must run released software), or a "
            "--policy file, or --accept-unreleased-software (admits any software, loudly)"
        )
    releases = GatewayReleases(
        load_keys(config.release_keys_pem),
        config.accept_unreleased_software,
        config.limits.release_entries_page_max,
    )
    if config.accept_unreleased_software:
        log.warning(
            "unreleased_software_accepted",
            warning="--accept-unreleased-software: workers running software in NO release are "
            "admitted; every admission says so",
        )
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
    if await store.ensure_schedule(
        lambda i: le.price_schedule(log_key, initial.with_from_index(i))
    ):
        log.info("price_schedule_logged", schedule=le.schedule_json(config.initial_prices))
    await releases.refresh(store)
    released = await store.release_orphaned_holds()
    if released:
        log.warning("orphaned_holds_released", count=released)
    lim = config.limits
    internal_errors.configure(lim.error_logs_per_interval_max, lim.error_log_interval_s)
    registry = Registry(lim.workers_max, lim.workers_per_provider_max)

    collateral = CollateralCache(config.collateral_dir, config.limits.collateral_refresh_s)

    def verifier(bundle: cpb.EvidenceBundle, nonce: bytes) -> VerifiedWorker:
        current = releases.policy(policy)
        if current.accept_unreleased:
            log.warning("unreleased_software_accepted", warning="release check NOT performed")
        return verify_bundle(
            bundle, current, roots, _utcnow(), expected_nonce=nonce, collateral=collateral.current()
        )

    auth = Authenticator(
        config.auth_public_keys_pem,
        config.auth_audience,
        cache_s=lim.token_cache_s,
        cache_entries_max=lim.token_cache_entries_max,
    )
    checkpointer = Checkpointer(config, store, log_key)

    # Disputes re-verify stored evidence only to learn the worker's attested receipt key, as of
    # the evidence's own issue time; whether its release was (or still is) allowed is not the
    # question (a worker revoked since must stay disputable).
    dispute_policy = dataclasses.replace(policy, accept_unreleased=True)

    def evidence_verifier(bundle: cpb.EvidenceBundle, when: dt.datetime) -> VerifiedWorker:
        return verify_bundle(bundle, dispute_policy, roots, when, collateral=collateral.current())

    desk = DisputeDesk(
        store,
        registry,
        log_key,
        evidence_verifier,
        verifiers or {},
    )
    suspended = await desk.load_suspensions()
    if suspended:
        log.warning("workers_suspended_by_disputes", count=suspended)
    router = JobRouter(config, registry, store, checkpointer)
    metrics = GatewayMetrics(registry, router.in_flight, router.held_micro)
    router.metrics = metrics
    link = WorkerLink(config, registry, verifier, _utcnow, store, metrics)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
            ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
        ]
    )
    gateway_svc, link_svc, log_svc = SERVICES
    add_service(
        server,
        GatewayServicer(config, auth, registry, router, link, store, collateral, releases, desk),
        gateway_svc,
    )
    add_service(server, WorkerLinkServicer(auth, link), link_svc)
    add_service(server, LogServicer(config, store, checkpointer), log_svc)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.reflection:
        names = [s.full_name for s in SERVICES] + [health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
    if config.tls_cert_pem is not None and config.tls_key_pem is not None:
        creds = grpc.ssl_server_credentials([(config.tls_key_pem, config.tls_cert_pem)])
        port = server.add_secure_port(config.listen, creds)
    else:
        port = server.add_insecure_port(config.listen)
    await server.start()
    for name in ("", *(s.full_name for s in SERVICES)):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    metrics_server = (
        await serve_metrics(metrics, config.metrics_listen) if config.metrics_listen else None
    )
    gw = RunningGateway(
        server=server,
        port=port,
        store=store,
        registry=registry,
        router=router,
        link=link,
        checkpointer=checkpointer,
        health=health_servicer,
        metrics=metrics,
        releases=releases,
        metrics_server=metrics_server,
        tasks=(
            asyncio.create_task(checkpointer.run()),
            asyncio.create_task(releases.run(store, lim.release_refresh_s)),
            asyncio.create_task(
                metrics.refresh_forever(
                    store, store.current_schedule().fee_account, lim.metrics_refresh_s
                )
            ),
        ),
    )
    log.info(
        "gateway_started",
        port=port,
        tls=config.tls_cert_pem is not None,
        workers_max=lim.workers_max,
        reflection=config.reflection,
        metrics_port=gw.metrics_port,
    )
    return gw
