"""The transparency log: signed checkpoints, proofs, entries, evidence and the ledger, public.
Proofs are always relative to a size the gateway has signed (gateway.checkpointer).
"""

from __future__ import annotations

from typing import Any

import grpc
import structlog

from ccgw.gateway.checkpointer import Checkpointer
from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.errors import BadRequest, NotFound
from ccgw.gateway.rpc import unary
from ccgw.gateway.store.base import Store
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc
from ccgw.verify import merkle

log = structlog.get_logger("gateway.log")


class LogServicer(lgrpc.TransparencyLogServicer):
    def __init__(self, config: GatewayConfig, store: Store, checkpointer: Checkpointer) -> None:
        self._config, self._store, self._cp = config, store, checkpointer
        self._limits = config.limits

    async def _signed_size(self, requested: int) -> tuple[int, str]:
        latest = await self._store.latest_checkpoint()
        if latest is None:
            await self._cp.maybe_sign(force=True)
            latest = await self._store.latest_checkpoint()
        if latest is None:
            raise NotFound("the log has no checkpoint yet")
        if requested and requested != latest[0]:
            raise BadRequest(f"proofs are served for the latest checkpoint size {latest[0]}")
        return latest

    @unary
    async def GetCheckpoint(
        self, request: lpb.GetCheckpointRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetCheckpointResponse:
        _, text = await self._signed_size(0)
        return lpb.GetCheckpointResponse(checkpoint=text)

    @unary
    async def GetInclusionProof(
        self, request: lpb.GetInclusionProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetInclusionProofResponse:
        found = await self._store.receipt(bytes(request.job_id))
        if found is None:
            raise NotFound("no receipt for this job id")
        jws, index = found
        size, _ = await self._signed_size(request.tree_size)
        if index >= size:
            await self._cp.maybe_sign(force=True)
            size, _ = await self._signed_size(0)
        if size > self._limits.log_tree_size_for_proofs_max:
            raise BadRequest("tree too large for proofs from this gateway")
        leaves = await self._store.leaf_hashes(size)
        entry = (await self._store.entries(index, index + 1))[0]
        return lpb.GetInclusionProofResponse(
            leaf_index=index,
            tree_size=size,
            hashes=merkle.inclusion_proof(index, leaves),
            receipt_jws=jws,
            evidence_sha256=entry.evidence_sha256,
        )

    @unary
    async def GetConsistencyProof(
        self, request: lpb.GetConsistencyProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetConsistencyProofResponse:
        size, _ = await self._signed_size(0)
        if not 0 < request.first <= request.second <= size:
            raise BadRequest(f"need 0 < first <= second <= {size}")
        if request.second > self._limits.log_tree_size_for_proofs_max:
            raise BadRequest("tree too large for proofs from this gateway")
        leaves = await self._store.leaf_hashes(request.second)
        return lpb.GetConsistencyProofResponse(
            hashes=merkle.consistency_proof(request.first, leaves)
        )

    @unary
    async def GetEntries(
        self, request: lpb.GetEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetEntriesResponse:
        if (
            request.end <= request.start
            or request.end - request.start > self._limits.log_entries_page_max
        ):
            raise BadRequest(f"ask for 1..{self._limits.log_entries_page_max} entries")
        rows = await self._store.entries(request.start, request.end)
        return lpb.GetEntriesResponse(
            entries=[
                lpb.LogEntry(
                    index=e.index, receipt_jws=e.receipt_jws, evidence_sha256=e.evidence_sha256
                )
                for e in rows
            ]
        )

    @unary
    async def GetEvidence(
        self, request: lpb.GetEvidenceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetEvidenceResponse:
        bundle = await self._store.evidence(request.evidence_sha256[:64])
        if bundle is None:
            raise NotFound("no evidence bundle with this digest")
        return lpb.GetEvidenceResponse(bundle=bundle)

    @unary
    async def GetLedger(
        self, request: lpb.GetLedgerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetLedgerResponse:
        limit = min(
            request.limit or self._limits.log_entries_page_max, self._limits.log_entries_page_max
        )
        rows = await self._store.ledger(request.after_seq, request.after_seq + limit)
        return lpb.GetLedgerResponse(
            entries=[
                lpb.LedgerEntry(
                    seq=r.seq,
                    transfer_id=r.transfer_id,
                    kind=r.kind,
                    job_id=r.job_id,
                    account=r.account,
                    amount_micro=r.amount_micro,
                )
                for r in rows
            ]
        )
