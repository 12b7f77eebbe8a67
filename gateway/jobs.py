"""Routing one sealed job and accounting for it (DESIGN.md steps 5 and 8).

The gateway never sees plaintext. It checks what it can see (header, sizes, limits, the caller's
account and quotas, the worker's state and attestation age), holds the job's maximum cost,
forwards the sealed bytes to the named worker, relays the sealed chunks while hashing them, and
verifies the worker's receipt against the worker's attested key and the bytes it relayed before
settling. Any failure voids the hold: no reward without a verified receipt, and at most one reward
per job id.

The answer digest starts with the answer salt of the JobStarted the gateway relayed, and a receipt
is settled only when that JobStarted was handed to the client's stream before any chunk: a client
that never got the salt cannot open the answer, so it is never charged for it.

Per job: one hold and one settle (or void) in the store, one token check (cached), one receipt
verification, one log line (`job`, ids and sizes only) and its metrics; the checkpointer is
called once per `checkpoint_every_entries` settled jobs, not per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

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
    status_for,
)
from ccgw.gateway.metrics import GatewayMetrics
from ccgw.gateway.quotas import InFlightQuota, RateLimiter
from ccgw.gateway.registry import CLOSED, JobChannel, Registry, WorkerSession
from ccgw.gateway.routing import is_fresh
from ccgw.gateway.rpc import RateLimitedLog
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
FAILURE_MESSAGE_CHARS_MAX = 200
_FAILURE_CODES = frozenset(wpb.FailureCode.values())


@dataclass
class JobRecord:
    """What the canonical `job` log line reports (ids, sizes, counts; never content)."""

    job_id: str
    account: str
    worker_id: str
    model: str
    request_bytes: int
    outcome: str = "error"
    answer_bytes: int = 0
    chunks: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micro: int = 0
    log_index: int = -1
    already_settled: bool = False
    first_event_ms: int = -1


@dataclass
class _Run:
    """One relay's state: the answer digest (from the start on) and whether the start (the salt
    the client needs to open the answer) was handed to the client's stream."""

    header: cpb.RoutingHeader
    rec: JobRecord
    started_s: float
    digest: AnswerDigest | None = None
    delivered: bool = False


class JobRouter:
    def __init__(
        self,
        config: GatewayConfig,
        registry: Registry,
        store: Store,
        checkpointer: Checkpointer,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._checkpointer = checkpointer
        self._config = config
        self._limits = lim = config.limits
        self._registry = registry
        self._store = store
        self.metrics = metrics
        self._in_flight: dict[bytes, int] = {}  # job id -> micro-tokens held
        self._rate = RateLimiter(
            lim.account_jobs_per_s, lim.account_jobs_burst, lim.accounts_tracked_max, "job"
        )
        self._account_jobs = InFlightQuota(lim.account_jobs_in_flight_max)
        self._refusals = RateLimitedLog(lim.error_logs_per_interval_max, lim.error_log_interval_s)
        self.closing = False
        self._voiding: set[asyncio.Future[None]] = set()  # hold releases still running
        self._idle = asyncio.Event()
        self._idle.set()

    def in_flight(self) -> int:
        return len(self._in_flight)

    def held_micro(self) -> int:
        return sum(self._in_flight.values())

    def max_cost(self, header: cpb.RoutingHeader) -> int:
        return self._store.current_schedule().cost_micro(
            header.model, header.max_input_tokens, header.max_new_tokens
        )

    def _admit(
        self, account: str, sealed: cpb.SealedRequest
    ) -> tuple[cpb.RoutingHeader, WorkerSession]:
        if self.closing:
            raise WorkerUnavailable("the gateway is shutting down")
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
        if session.draining:
            raise WorkerUnavailable(f"worker {session.worker_id} is draining")
        if session.suspended:
            raise WorkerUnavailable(f"worker {session.worker_id} is suspended by a dispute")
        if not is_fresh(session, self._limits.attestation_max_age_s, time.monotonic()):
            raise WorkerUnavailable(f"worker {session.worker_id} has no fresh attestation")
        if header.job_id in self._in_flight:
            raise Conflict("this job id is already in flight")
        if len(self._in_flight) >= self._limits.jobs_in_flight_max:
            raise Overloaded("gateway is at its in-flight job limit")
        if len(session.jobs) >= min(session.capacity, self._limits.jobs_in_flight_per_worker_max):
            raise Overloaded(f"worker {session.worker_id} is at capacity")
        self._rate.take(account)
        return header, session

    def _refused(self, account: str, exc: Exception) -> None:
        code = status_for(exc)[0].name
        if self.metrics is not None:
            self.metrics.jobs.labels(code).inc()
        dropped = self._refusals.allow()
        if dropped is not None:
            log.info("job_refused", account=account, code=code, dropped_since_last=dropped)

    async def run(self, account: str, sealed: cpb.SealedRequest) -> AsyncIterator[gpb.InferEvent]:
        try:
            header, session = self._admit(account, sealed)
            self._account_jobs.acquire(account)
        except Exception as exc:
            self._refused(account, exc)
            raise
        job_id = header.job_id
        rec = JobRecord(
            job_id.hex(), account, session.worker_id, header.model, len(sealed.ciphertext)
        )
        started_s = time.monotonic()
        held = self.max_cost(header)
        try:
            await self._store.hold(job_id, account, held)
        except Exception as exc:
            self._account_jobs.release(account)
            self._refused(account, exc)
            raise
        channel = JobChannel(
            job_id=job_id,
            events_max=self._limits.job_events_max,
            bytes_max=self._limits.job_buffered_bytes_max,
        )
        self._in_flight[job_id] = held
        self._idle.clear()
        session.jobs[job_id] = channel
        try:
            session.send(wpb.GatewayMessage(job=wpb.Job(request=sealed)))
            async for event in self._relay(header, session, sealed, channel, rec, started_s):
                yield event
            rec.outcome = "ok"
        except BaseException as exc:
            cancelled = isinstance(exc, GeneratorExit | asyncio.CancelledError)
            rec.outcome = "cancelled" if cancelled else status_for(exc)[0].name
            if not session.closed and not isinstance(exc, WorkerRejected):  # stop the worker
                session.outbox.put_nowait(wpb.GatewayMessage(cancel=wpb.CancelJob(job_id=job_id)))
            raise
        finally:
            try:
                if rec.log_index < 0:  # not settled: release the hold (even when cancelled)
                    voiding = asyncio.ensure_future(self._store.void(job_id))
                    self._voiding.add(voiding)
                    voiding.add_done_callback(self._voiding.discard)
                    await asyncio.shield(voiding)
            finally:
                self._finish(session, channel, account, rec, started_s)

    def _finish(
        self,
        session: WorkerSession,
        channel: JobChannel,
        account: str,
        rec: JobRecord,
        started_s: float,
    ) -> None:
        self._detach(session, channel)
        self._in_flight.pop(channel.job_id, None)
        if not self._in_flight:
            self._idle.set()
        self._account_jobs.release(account)
        duration_s = time.monotonic() - started_s
        if self.metrics is not None:
            self.metrics.jobs.labels(rec.outcome).inc()
            self.metrics.job_seconds.labels(rec.outcome).observe(duration_s)
        log.info("job", **vars(rec), duration_ms=round(duration_s * 1000, 2))

    @staticmethod
    def _detach(session: WorkerSession, channel: JobChannel) -> None:
        if session.jobs.get(channel.job_id) is channel:
            del session.jobs[channel.job_id]
            if session.draining and not session.jobs and not session.closed:
                session.end()

    async def _relay(
        self,
        header: cpb.RoutingHeader,
        session: WorkerSession,
        sealed: cpb.SealedRequest,
        channel: JobChannel,
        rec: JobRecord,
        started_s: float,
    ) -> AsyncIterator[gpb.InferEvent]:
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self._limits.job_deadline_s, channel.close)
        run = _Run(header, rec, started_s)
        try:
            while True:
                msg = await channel.events.get()
                if msg is CLOSED:
                    raise self._ended(session, channel)
                channel.buffered_bytes -= msg.ByteSize()
                kind = msg.WhichOneof("msg")
                if kind == "update":
                    u = msg.update
                    if u.answer_salt:
                        self._start(run, u.answer_salt)
                    for c in u.chunks:
                        self._chunk(c, run)
                    if not u.receipt_jws:
                        yield gpb.InferEvent(update=u)
                        run.delivered = run.digest is not None
                        continue
                    jws = u.receipt_jws
                    if not run.delivered and u.answer_salt:  # the salt reaches the client first
                        u.ClearField("receipt_jws")
                        yield gpb.InferEvent(update=u)
                        run.delivered = True
                        u = wpb.JobUpdate(job_id=header.job_id, receipt_jws=jws)
                    u.log_index = await self._receipt(run, session, channel, sealed, jws)
                    yield gpb.InferEvent(update=u)
                    return
                if kind == "started":
                    self._start(run, msg.started.answer_salt)
                    yield gpb.InferEvent(started=msg.started)
                    run.delivered = True
                elif kind == "chunk":
                    yield gpb.InferEvent(chunk=self._chunk(msg.chunk.chunk, run))
                elif kind == "receipt":
                    jws = msg.receipt.jws
                    log_index = await self._receipt(run, session, channel, sealed, jws)
                    yield gpb.InferEvent(receipt=gpb.ReceiptEnvelope(jws=jws, log_index=log_index))
                    return
                elif kind == "failed":
                    failed = self._failure(header.job_id, msg.failed)
                    if failed.sealed_detail:
                        yield gpb.InferEvent(failed=failed)
                    raise WorkerRejected(wpb.FailureCode.Name(failed.code), failed.message)
                else:
                    raise WorkerUnavailable(f"worker {session.worker_id} sent {kind} for a job")
        finally:
            timer.cancel()

    def _start(self, run: _Run, salt: bytes) -> None:
        if run.digest is not None or len(salt) != ANSWER_SALT_BYTES:
            raise WorkerUnavailable("worker sent a malformed or second job start")
        run.digest = AnswerDigest(bytes(salt))
        elapsed_s = time.monotonic() - run.started_s
        run.rec.first_event_ms = int(elapsed_s * 1000)
        if self.metrics is not None:
            self.metrics.first_event_seconds.observe(elapsed_s)

    async def _receipt(
        self,
        run: _Run,
        session: WorkerSession,
        channel: JobChannel,
        sealed: cpb.SealedRequest,
        jws: str,
    ) -> int:
        """Settle once the start reached the client; free the worker's slot before the client
        hears the job is done (and sends its next one)."""
        if run.digest is None or not run.delivered:
            raise WorkerUnavailable("receipt for a job whose start the client never got")
        log_index = await self._settle(
            run.header, session, request_sha256(sealed), run.digest, jws, run.rec
        )
        self._detach(session, channel)
        return log_index

    @staticmethod
    def _ended(session: WorkerSession, channel: JobChannel) -> Exception:
        if channel.shed:
            return Overloaded("the job's client reads slower than its worker answers; job shed")
        if session.closed:
            return WorkerUnavailable(f"worker {session.worker_id} disconnected during the job")
        return DeadlineExceeded("the job ran past its deadline")

    @staticmethod
    def _chunk(c: wpb.SealedChunk, run: _Run) -> wpb.SealedChunk:
        if run.digest is None:
            raise WorkerUnavailable("worker sent an answer chunk before the job start")
        if len(c.ciphertext) > limits.CHUNK_CIPHERTEXT_BYTES_MAX:
            raise WorkerUnavailable("worker sent an oversized chunk")
        try:
            run.digest.update(c.index, c.ciphertext, c.final)
        except StreamError as exc:
            raise WorkerUnavailable(f"worker broke the chunk order: {exc}") from exc
        run.rec.chunks += 1
        run.rec.answer_bytes += len(c.ciphertext)
        return c

    @staticmethod
    def _failure(job_id: bytes, f: wpb.JobFailed) -> wpb.JobFailed:
        """The worker's refusal as relayed: a known code, a bounded clear message, and the sealed
        reason only when its sizes are right (the client opens it; the gateway cannot)."""
        code = f.code if f.code in _FAILURE_CODES else wpb.FAILURE_CODE_UNSPECIFIED
        out = wpb.JobFailed(job_id=job_id, code=code, message=f.message[:FAILURE_MESSAGE_CHARS_MAX])
        if (
            len(f.detail_salt) == ANSWER_SALT_BYTES
            and 0 < len(f.sealed_detail) <= limits.REFUSAL_SEALED_BYTES_MAX
        ):
            out.detail_salt, out.sealed_detail = f.detail_salt, f.sealed_detail
        return out

    async def _settle(
        self,
        header: cpb.RoutingHeader,
        session: WorkerSession,
        req_sha: str,
        digest: AnswerDigest,
        jws: str,
        rec: JobRecord,
    ) -> int:
        t0 = time.monotonic()
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
            log.warning("receipt_rejected", job_id=rec.job_id, reason=str(exc))
            raise ReceiptRejected(f"worker receipt refused: {exc}") from exc
        # The reward follows from the receipt and the price schedule in force at its log index.
        result = await self._store.settle(
            header.job_id, receipt_jws=jws, evidence_sha256=v.evidence_sha256
        )
        rec.input_tokens, rec.output_tokens = receipt.input_tokens, receipt.output_tokens
        rec.cost_micro, rec.log_index = result.cost_micro, result.log_index
        rec.already_settled = result.already_settled
        if self.metrics is not None:
            self.metrics.settle_seconds.observe(time.monotonic() - t0)
            if not result.already_settled:
                self.metrics.settled_cost.inc(result.cost_micro)
        # Decided from memory (no store round trip) unless a checkpoint is due.
        await self._checkpointer.maybe_sign(result.log_index + 1)
        return result.log_index

    async def drain(self, grace_s: float) -> int:
        """Take no new job; wait up to `grace_s` for the jobs in flight. Returns those left."""
        self.closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_s)
        return len(self._in_flight)

    async def released(self) -> None:
        """Wait for the hold releases of jobs that ended (e.g. cancelled at shutdown)."""
        if self._voiding:
            await asyncio.gather(*self._voiding, return_exceptions=True)
