"""The transparency log, public and unauthenticated: signed checkpoints, proofs, entries, evidence,
the ledger view and account balances.

Every request field is validated here, at the edge, before it reaches the store: integers within
0..2^63-1 and their ranges, job ids of 16 bytes, digests of 64 hex characters, account names as
the log allows them, page sizes bounded. A bad field is BadRequest (INVALID_ARGUMENT, logged
without a traceback). Proofs are served for signed sizes only and cost O(log n) reads.
"""

from __future__ import annotations

import re
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
from ccgw.verify import limits
from ccgw.verify import log_entries as le
from ccgw.verify.errors import MalformedError

log = structlog.get_logger("gateway.log")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def u63(value: int, name: str) -> int:
    if not 0 <= value <= limits.U63_MAX:
        raise BadRequest(f"{name} must be within 0..2^63-1")
    return value


def _account(value: str, name: str = "account") -> str:
    try:
        return le.account(value)
    except MalformedError as exc:
        raise BadRequest(f"{name}: {exc}") from None


def _entry(e: Any) -> lpb.LogEntry:
    return lpb.LogEntry(index=e.index, kind=e.kind, body=e.body)


class LogServicer(lgrpc.TransparencyLogServicer):
    def __init__(self, config: GatewayConfig, store: Store, checkpointer: Checkpointer) -> None:
        self._config, self._store, self._cp = config, store, checkpointer
        self._page = config.limits.log_entries_page_max

    async def _latest(self) -> tuple[int, str]:
        latest = await self._store.latest_checkpoint()
        if latest is None:
            await self._cp.maybe_sign(force=True)
            latest = await self._store.latest_checkpoint()
        if latest is None:
            raise NotFound("the log has no checkpoint yet")
        return latest

    async def _signed_size(self, requested: int, covering: int = 0) -> int:
        """A signed size: `requested` if it is one, else (0) the latest, signing afresh when the
        latest does not cover leaf `covering` yet."""
        u63(requested, "tree_size")
        if requested:
            if await self._store.checkpoint(requested) is None:
                raise BadRequest(f"no signed checkpoint of size {requested}")
            if covering >= requested:
                raise BadRequest(f"leaf {covering} is not in the tree of size {requested}")
            return requested
        size, _ = await self._latest()
        if covering >= size:
            await self._cp.maybe_sign(force=True)
            size, _ = await self._latest()
        return size

    async def _proof(self, index: int, tree_size: int) -> lpb.GetInclusionProofResponse:
        size = await self._signed_size(tree_size, covering=index)
        rows = await self._store.entries(index, index + 1)
        if index >= size or not rows:
            raise NotFound(f"no entry {index} under a signed checkpoint")
        return lpb.GetInclusionProofResponse(
            leaf_index=index,
            tree_size=size,
            hashes=await self._store.inclusion_proof(index, size),
            entry=_entry(rows[0]),
        )

    @unary
    async def GetCheckpoint(
        self, request: lpb.GetCheckpointRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetCheckpointResponse:
        _, text = await self._latest()
        return lpb.GetCheckpointResponse(checkpoint=text)

    @unary
    async def GetInclusionProof(
        self, request: lpb.GetInclusionProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetInclusionProofResponse:
        if len(request.job_id) != limits.JOB_ID_BYTES:
            raise BadRequest(f"job_id must be {limits.JOB_ID_BYTES} bytes")
        u63(request.tree_size, "tree_size")
        found = await self._store.receipt(bytes(request.job_id))
        if found is None:
            raise NotFound("no receipt for this job id")
        return await self._proof(found[1], request.tree_size)

    @unary
    async def GetEntryProof(
        self, request: lpb.GetEntryProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetInclusionProofResponse:
        return await self._proof(u63(request.index, "index"), u63(request.tree_size, "tree_size"))

    @unary
    async def GetConsistencyProof(
        self, request: lpb.GetConsistencyProofRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetConsistencyProofResponse:
        first, second = u63(request.first, "first"), u63(request.second, "second")
        size, _ = await self._latest()
        if not 0 < first <= second <= size:
            raise BadRequest(f"need 0 < first <= second <= {size}")
        return lpb.GetConsistencyProofResponse(
            hashes=await self._store.consistency_proof(first, second)
        )

    @unary
    async def GetEntries(
        self, request: lpb.GetEntriesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetEntriesResponse:
        start, end = u63(request.start, "start"), u63(request.end, "end")
        if end <= start or end - start > self._page:
            raise BadRequest(f"ask for 1..{self._page} entries")
        rows = await self._store.entries(start, end)
        return lpb.GetEntriesResponse(entries=[_entry(e) for e in rows])

    @unary
    async def GetEvidence(
        self, request: lpb.GetEvidenceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetEvidenceResponse:
        if not _HEX64.fullmatch(request.evidence_sha256):
            raise BadRequest("evidence_sha256 must be 64 lowercase hex characters")
        bundle = await self._store.evidence(request.evidence_sha256)
        if bundle is None:
            raise NotFound("no evidence bundle with this digest")
        return lpb.GetEvidenceResponse(bundle=bundle)

    def _limit(self, requested: int) -> int:
        return min(requested or self._page, self._page)

    @unary
    async def GetLedger(
        self, request: lpb.GetLedgerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetLedgerResponse:
        rows = await self._store.ledger(
            u63(request.after_seq, "after_seq"), self._limit(request.limit)
        )
        return lpb.GetLedgerResponse(
            entries=[
                lpb.LedgerEntry(
                    seq=r.seq,
                    log_index=r.log_index,
                    transfer_id=r.transfer_id,
                    kind=r.kind,
                    job_id=r.job_id,
                    account=r.account,
                    amount_micro=r.amount_micro,
                )
                for r in rows
            ]
        )

    @unary
    async def GetAccounts(
        self, request: lpb.GetAccountsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetAccountsResponse:
        after = _account(request.after, "after") if request.after else ""
        size, rows = await self._store.accounts(after, self._limit(request.limit))
        return lpb.GetAccountsResponse(
            log_size=size,
            accounts=[
                lpb.AccountBalance(account=r.account, balance_micro=r.balance_micro) for r in rows
            ],
        )

    @unary
    async def GetReleases(
        self, request: lpb.GetReleasesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetReleasesResponse:
        requested = u63(request.tree_size, "tree_size")
        start = u63(request.start_index, "start_index")
        page = self._config.limits.release_entries_page_max
        if not requested:
            # The latest checkpoint must cover every release logged: a client follows releases
            # only through a checkpoint, so one published a moment ago must not wait for the next.
            size, _ = await self._latest()
            if await self._store.release_entries(size, 1):
                await self._cp.maybe_sign(force=True)
        size = await self._signed_size(requested)
        text = await self._store.checkpoint(size)
        if text is None:
            raise NotFound(f"no signed checkpoint of size {size}")
        rows = [e for e in await self._store.release_entries(start, page + 1) if e.index < size]
        more = len(rows) > page
        out: list[lpb.ProvenEntry] = []
        budget = self._config.limits.release_page_bytes_max
        for e in rows[:page]:
            if out and budget < len(e.body):  # a page stays within a gRPC message's bound
                more = True
                break
            budget -= len(e.body)
            out.append(
                lpb.ProvenEntry(
                    entry=_entry(e), hashes=await self._store.inclusion_proof(e.index, size)
                )
            )
        return lpb.GetReleasesResponse(tree_size=size, entries=out, more=more, checkpoint=text)

    @unary
    async def GetAccountKeys(
        self, request: lpb.GetAccountKeysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> lpb.GetAccountKeysResponse:
        indexes = await self._store.account_key_entries(_account(request.account))
        return lpb.GetAccountKeysResponse(log_indexes=indexes)
