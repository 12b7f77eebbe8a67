"""gRPC servicers: thin adapters from RPCs to the registry, router, worker link and store.

Every request field is checked here, at the edge (INVALID_ARGUMENT), before it reaches the
registry or the store. Errors are mapped to status codes in one place (gateway.errors.status_for),
applied by the decorators in gateway.rpc; no handler builds a status itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog

from ccgw.gateway.auth import Authenticator, Principal
from ccgw.gateway.collateral_cache import CollateralCache
from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.disputes import DisputeDesk
from ccgw.gateway.errors import BadRequest, NotFound
from ccgw.gateway.jobs import JobRouter
from ccgw.gateway.quotas import RateLimiter
from ccgw.gateway.registry import Registry
from ccgw.gateway.releases import GatewayReleases
from ccgw.gateway.routing import rank
from ccgw.gateway.rpc import streaming, unary
from ccgw.gateway.store.base import Store
from ccgw.gateway.worker_link import WorkerLink
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
from ccgw.protos.ccgw.v1 import gateway_pb2_grpc as ggrpc
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.protos.ccgw.v1 import worker_pb2_grpc as wgrpc
from ccgw.verify import limits

WORKER_ID_CHARS_MAX = 64
REGION_CHARS_MAX = 64
_STATES = {"ready": gpb.READY, "draining": gpb.DRAINING}


def _check_worker_id(worker_id: str) -> None:
    if not 0 < len(worker_id) <= WORKER_ID_CHARS_MAX:
        raise BadRequest(f"worker_id must be 1..{WORKER_ID_CHARS_MAX} characters")


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
        releases: GatewayReleases | None = None,
        disputes: DisputeDesk | None = None,
    ) -> None:
        self._config, self._auth, self._registry = config, auth, registry
        self._releases = releases or GatewayReleases((), False, 1)
        self._disputes = disputes
        self._router, self._link, self._store = router, link, store
        self._collateral = collateral or CollateralCache(None)
        lim = config.limits
        self._challenges = RateLimiter(
            lim.account_challenges_per_s,
            lim.account_challenges_burst,
            lim.accounts_tracked_max,
            "challenge",
        )

    def _principal(self, context: grpc.aio.ServicerContext[Any, Any], *roles: str) -> Principal:
        p = self._auth.authenticate(context.invocation_metadata())
        self._auth.require(p, *roles)
        return p

    @unary
    async def ListWorkers(
        self, request: gpb.ListWorkersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gpb.ListWorkersResponse:
        p = self._principal(context, "client", "admin")
        if len(request.model.encode()) > limits.MODEL_NAME_BYTES_MAX:
            raise BadRequest(f"model names are at most {limits.MODEL_NAME_BYTES_MAX} bytes")
        if len(request.region) > REGION_CHARS_MAX:
            raise BadRequest(f"region is at most {REGION_CHARS_MAX} characters")
        sessions = self._registry.sessions()
        ranked = rank(sessions, request.model, self._config, request.region)
        if p.role == "admin":  # operators also see the workers clients are not offered
            offered = set(map(id, ranked))
            ranked += [
                s
                for s in sessions
                if id(s) not in offered
                and (not request.model or request.model in s.verified.models)
            ]
        price = self._store.current_schedule().price(request.model)
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
                    state=_STATES[s.state],
                    attested_at_ms=s.attested_at_ms,
                    input_per_1k_micro=price.input_per_1k_micro,
                    output_per_1k_micro=price.output_per_1k_micro,
                )
                for s in ranked[: self._config.limits.list_workers_max]
            ],
            collateral=self._collateral.proto(),
        )

    @unary
    async def ChallengeWorker(
        self, request: gpb.ChallengeWorkerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gpb.ChallengeWorkerResponse:
        p = self._principal(context, "client", "admin")
        _check_worker_id(request.worker_id)
        if len(request.nonce) != limits.NONCE_BYTES:
            raise BadRequest(f"nonce must be {limits.NONCE_BYTES} bytes")
        self._challenges.take(p.account)
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
        if len(request.job_id) != limits.JOB_ID_BYTES:
            raise BadRequest(f"job_id must be {limits.JOB_ID_BYTES} bytes")
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

    @unary
    async def DrainWorker(
        self, request: gpb.DrainWorkerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gpb.DrainWorkerResponse:
        self._principal(context, "admin")
        _check_worker_id(request.worker_id)
        in_flight = self._link.drain(self._registry.get(request.worker_id))
        return gpb.DrainWorkerResponse(in_flight=in_flight)

    @unary
    async def PublishRelease(
        self, request: gpb.PublishReleaseRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gpb.PublishReleaseResponse:
        self._principal(context, "admin")
        if len(request.document) > limits.RELEASE_DOCUMENT_BYTES_MAX:
            raise BadRequest(f"document exceeds {limits.RELEASE_DOCUMENT_BYTES_MAX} bytes")
        done = await self._releases.publish(self._store, bytes(request.document))
        return gpb.PublishReleaseResponse(
            log_index=done.result.log_index,
            already_logged=done.result.already_logged,
            kind=done.kind,
            digest=done.digest,
        )

    @unary
    async def FileDispute(
        self, request: gpb.FileDisputeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> gpb.FileDisputeResponse:
        p = self._principal(context, "client", "admin")
        if self._disputes is None:
            raise NotFound("this gateway takes no disputes")
        if len(request.evidence) > limits.DISPUTE_FILE_BYTES_MAX:
            raise BadRequest(f"a dispute is at most {limits.DISPUTE_FILE_BYTES_MAX} bytes")
        index, outcome, verdict, worker, again = await self._disputes.file(
            p.account, p.role == "admin", bytes(request.evidence)
        )
        return gpb.FileDisputeResponse(
            log_index=index,
            outcome=outcome,
            position=verdict.answer_tokens if verdict.position is None else verdict.position,
            reason=verdict.reason,
            worker_id=worker,
            already_logged=again,
        )


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
