"""Routing one sealed job and accounting for it (DESIGN.md steps 5 and 8).

The gateway never sees plaintext. It checks what it can see (header, sizes, limits, the caller's
account), holds the job's maximum cost, forwards the sealed bytes to the named worker, relays the
sealed chunks while hashing them, and verifies the worker's receipt against the worker's attested
key and the bytes it relayed before settling. Any failure voids the hold: no reward without a
verified receipt, and at most one reward per job id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import structlog

from ccgw.gateway.checkpointer import Checkpointer
from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.errors import (
    BadRequest,
    Conflict,
    DeadlineExceeded,
    Overloaded,
    PermissionDenied,
    ReceiptRejected,
    TooLarge,
    WorkerRejected,
    WorkerUnavailable,
)
from ccgw.gateway.registry import JobChannel, Registry, WorkerSession
from ccgw.gateway.store.base import Store
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.verify import limits
from ccgw.verify.chunks import ANSWER_SALT_BYTES, AnswerDigest
from ccgw.verify.errors import ReceiptError, StreamError
from ccgw.verify.hpke import check_sealed_size, parse_header, request_sha256
from ccgw.verify.receipts import verify_job_receipt

log = structlog.get_logger("gateway.jobs")


class JobRouter:
    def __init__(
        self, config: GatewayConfig, registry: Registry, store: Store, checkpointer: Checkpointer
    ) -> None:
        self._checkpointer = checkpointer
        self._config = config
        self._limits = config.limits
        self._registry = registry
        self._store = store
        self._in_flight: set[bytes] = set()

    def max_cost(self, header: cpb.RoutingHeader) -> int:
        return self._store.current_schedule().cost_micro(
            header.model, header.max_input_tokens, header.max_new_tokens
        )

    def _admit(
        self, account: str, sealed: cpb.SealedRequest
    ) -> tuple[cpb.RoutingHeader, WorkerSession]:
        header = parse_header(sealed.header)
        check_sealed_size(sealed, header)
        if header.account != account:
            raise PermissionDenied("the routing header names another account than the caller's")
        if not 0 < header.max_input_tokens <= self._limits.prompt_tokens_max:
            raise TooLarge(f"max_input_tokens must be within 1..{self._limits.prompt_tokens_max}")
        if not 0 < header.max_new_tokens <= self._limits.new_tokens_max:
            raise TooLarge(f"max_new_tokens must be within 1..{self._limits.new_tokens_max}")
        session = self._registry.get(header.worker_id)
        if header.key_id != session.verified.key_id:
            raise BadRequest("request is sealed to a key this worker does not hold")
        if header.model not in session.verified.models:
            raise BadRequest(f"worker {session.worker_id} does not serve {header.model!r}")
        if header.job_id in self._in_flight:
            raise Conflict("this job id is already in flight")
        if len(self._in_flight) >= self._limits.jobs_in_flight_max:
            raise Overloaded("gateway is at its in-flight job limit")
        if len(session.jobs) >= min(session.capacity, self._limits.jobs_in_flight_per_worker_max):
            raise Overloaded(f"worker {session.worker_id} is at capacity")
        return header, session

    async def run(self, account: str, sealed: cpb.SealedRequest) -> AsyncIterator[gpb.InferEvent]:
        header, session = self._admit(account, sealed)
        job_id = header.job_id
        started_s = time.monotonic()
        jlog = log.bind(job_id=job_id.hex(), worker_id=session.worker_id, account=account)
        await self._store.hold(job_id, account, self.max_cost(header))
        channel = JobChannel(job_id=job_id, events=asyncio.Queue(self._limits.job_events_max))
        self._in_flight.add(job_id)
        session.jobs[job_id] = channel
        settled = False
        outcome = "error"
        try:
            session.send(wpb.GatewayMessage(job=wpb.Job(request=sealed)))
            async for event in self._relay(header, session, sealed, channel):
                if event.WhichOneof("event") == "receipt":
                    settled = True
                yield event
            outcome = "ok"
        except (GeneratorExit, asyncio.CancelledError):
            outcome = "cancelled"
            if not session.closed:
                session.outbox.put_nowait(wpb.GatewayMessage(cancel=wpb.CancelJob(job_id=job_id)))
            raise
        finally:
            if session.jobs.get(job_id) is channel:
                del session.jobs[job_id]
            self._in_flight.discard(job_id)
            if not settled:
                await asyncio.shield(self._store.void(job_id))
            jlog.info(
                "job",
                outcome=outcome,
                request_bytes=len(sealed.ciphertext),
                duration_ms=int((time.monotonic() - started_s) * 1000),
            )

    async def _relay(
        self,
        header: cpb.RoutingHeader,
        session: WorkerSession,
        sealed: cpb.SealedRequest,
        channel: JobChannel,
    ) -> AsyncIterator[gpb.InferEvent]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._limits.job_deadline_s
        digest = AnswerDigest()
        req_sha = request_sha256(sealed)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeadlineExceeded("the job ran past its deadline")
            try:
                msg = await asyncio.wait_for(channel.events.get(), remaining)
            except TimeoutError as exc:
                raise DeadlineExceeded("the job ran past its deadline") from exc
            kind = msg.WhichOneof("msg")
            if kind == "started":
                if len(msg.started.answer_salt) != ANSWER_SALT_BYTES:
                    raise WorkerUnavailable("worker sent a malformed job start")
                yield gpb.InferEvent(started=msg.started)
            elif kind == "chunk":
                c = msg.chunk.chunk
                if len(c.ciphertext) > limits.CHUNK_CIPHERTEXT_BYTES_MAX:
                    raise WorkerUnavailable("worker sent an oversized chunk")
                try:
                    digest.update(c.index, c.ciphertext, c.final)
                except StreamError as exc:
                    raise WorkerUnavailable(f"worker broke the chunk order: {exc}") from exc
                yield gpb.InferEvent(chunk=c)
            elif kind == "receipt":
                log_index = await self._settle(header, session, req_sha, digest, msg.receipt.jws)
                yield gpb.InferEvent(
                    receipt=gpb.ReceiptEnvelope(jws=msg.receipt.jws, log_index=log_index)
                )
                return
            elif kind == "failed":
                code = wpb.FailureCode.Name(msg.failed.code)
                raise WorkerRejected(code, msg.failed.message[:200])
            else:  # the worker disconnected (registry closes channels with an empty message)
                raise WorkerUnavailable(f"worker {session.worker_id} disconnected during the job")

    async def _settle(
        self,
        header: cpb.RoutingHeader,
        session: WorkerSession,
        req_sha: str,
        digest: AnswerDigest,
        jws: str,
    ) -> int:
        v = session.verified
        try:
            receipt = verify_job_receipt(
                jws,
                v,
                session.worker_id,
                header,
                req_sha,
                digest,
                provider=session.provider_account,
            )
        except ReceiptError as exc:
            log.warning("receipt_rejected", reason=str(exc))
            raise ReceiptRejected(f"worker receipt refused: {exc}") from exc
        # The reward follows from the receipt and the price schedule in force at its log index.
        result = await self._store.settle(
            header.job_id, receipt_jws=jws, evidence_sha256=v.evidence_sha256
        )
        await self._checkpointer.maybe_sign(result.log_index + 1)
        log.info(
            "job_settled",
            cost_micro=result.cost_micro,
            input_tokens=receipt.input_tokens,
            output_tokens=receipt.output_tokens,
            log_index=result.log_index,
            already_settled=result.already_settled,
        )
        return result.log_index
