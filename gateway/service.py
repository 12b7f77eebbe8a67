"""gRPC servicers: thin adapters from RPCs to the registry, router, worker link and store.

Errors are mapped to status codes in one place (gateway.errors.status_for), applied by the
decorators in gateway.rpc; no handler builds a status itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from ccgw.gateway.auth import Authenticator, Principal
from ccgw.gateway.collateral_cache import CollateralCache
from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.errors import NotFound
from ccgw.gateway.jobs import JobRouter
from ccgw.gateway.registry import Registry
from ccgw.gateway.rpc import streaming, unary
from ccgw.gateway.store.base import Store
from ccgw.gateway.worker_link import WorkerLink
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
from ccgw.protos.ccgw.v1 import gateway_pb2_grpc as ggrpc
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.protos.ccgw.v1 import worker_pb2_grpc as wgrpc

log = structlog.get_logger("gateway.service")


class GatewayServicer(ggrpc.GatewayServicer):
    def __init__(
        self,
        config: GatewayConfig,
        auth: Authenticator,
        registry: Registry,
        router: JobRouter,
        link: WorkerLink,
        store: Store,
        collateral: CollateralCache | None = None,
    ) -> None:
        self._config, self._auth, self._registry = config, auth, registry
        self._router, self._link, self._store = router, link, store
        self._collateral = collateral or CollateralCache(None)

    def _principal(self, context: grpc.aio.ServicerContext[Any, Any], *roles: str) -> Principal:
        p = self._auth.authenticate(context.invocation_metadata())
        self._auth.require(p, *roles)
        return p

    @unary
    async def ListWorkers(
        self, request: gpb.ListWorkersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gpb.ListWorkersResponse:
        self._principal(context, "client", "admin")
        sessions = self._registry.serving(request.model)[: self._config.limits.list_workers_max]
        return gpb.ListWorkersResponse(
            workers=[
                gpb.WorkerInfo(
                    worker_id=s.worker_id,
                    models=sorted(s.verified.models),
                    evidence=s.evidence,
                    evidence_sha256=s.verified.evidence_sha256,
                    in_flight=len(s.jobs),
                    capacity=s.capacity,
                    region=s.region,
                    admitted_at_ms=s.admitted_at_ms,
                )
                for s in sessions
            ],
            collateral=self._collateral.proto(),
        )

    @unary
    async def ChallengeWorker(
        self, request: gpb.ChallengeWorkerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gpb.ChallengeWorkerResponse:
        self._principal(context, "client", "admin")
        session = self._registry.get(request.worker_id)
        bundle = await self._link.challenge(
            session, bytes(request.nonce), self._config.limits.client_challenge_timeout_s
        )
        return gpb.ChallengeWorkerResponse(evidence=bundle, collateral=self._collateral.proto())

    @streaming
    async def Infer(
        self, request: cpb.SealedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[gpb.InferEvent]:
        p = self._principal(context, "client")
        async for event in self._router.run(p.account, request):
            yield event

    @unary
    async def GetReceipt(
        self, request: gpb.GetReceiptRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gpb.GetReceiptResponse:
        self._principal(context, "client", "provider", "admin")
        found = await self._store.receipt(bytes(request.job_id))
        if found is None:
            raise NotFound("no receipt for this job id")
        return gpb.GetReceiptResponse(receipt=gpb.ReceiptEnvelope(jws=found[0], log_index=found[1]))

    @unary
    async def GetBalance(
        self, request: gpb.GetBalanceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gpb.GetBalanceResponse:
        p = self._principal(context, "client", "provider", "admin")
        available, held = await self._store.balance(p.account)
        return gpb.GetBalanceResponse(account=p.account, balance_micro=available, held_micro=held)


class WorkerLinkServicer(wgrpc.WorkerLinkServicer):
    def __init__(self, auth: Authenticator, link: WorkerLink) -> None:
        self._auth, self._link = auth, link

    @streaming
    async def Connect(
        self,
        request_iterator: AsyncIterator[wpb.WorkerMessage],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[wpb.GatewayMessage]:
        p = self._auth.authenticate(context.invocation_metadata())
        self._auth.require(p, "provider")
        async for msg in self._link.connect(p.account, request_iterator.__aiter__()):
            yield msg
