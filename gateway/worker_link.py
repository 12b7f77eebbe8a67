"""The gateway's side of a worker stream: admission, dispatch of worker messages, re-challenges,
draining.

Admission (DESIGN.md step 2): the worker says hello; the gateway sends a fresh 32-byte nonce; the
worker answers with an evidence bundle for that nonce; the gateway verifies it against its policy
(the simulated root only when explicitly allowed, with a warning on every admission) and admits the
worker under an id derived from its attested key. Admissions in progress are bounded
(`admissions_pending_max`, beyond it RESOURCE_EXHAUSTED before any work) and evidence is verified
off the event loop, so a registration flood cannot starve the jobs in flight. Afterwards the
gateway re-challenges on a schedule and evicts a worker whose evidence goes stale, stops
verifying, or changes keys; a worker silent for longer than the heartbeat timeout is evicted too.

Every worker message is checked at the edge (sizes, ids, enum values); a malformed one ends the
stream with INVALID_ARGUMENT. A draining worker (its own WorkerDraining, or an operator's
DrainWorker) takes no new job and its stream is closed once its jobs are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime

import structlog

from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.errors import (
    BadRequest,
    DeadlineExceeded,
    GatewayError,
    Overloaded,
    PermissionDenied,
)
from ccgw.gateway.metrics import GatewayMetrics
from ccgw.gateway.registry import Registry, WorkerSession
from ccgw.gateway.rpc import RateLimitedLog
from ccgw.gateway.store.base import Store
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.verify import limits
from ccgw.verify.attestation.bundle import VerifiedWorker
from ccgw.verify.chunks import ANSWER_SALT_BYTES
from ccgw.verify.errors import VerifyError

log = structlog.get_logger("gateway.worker_link")

Verifier = Callable[[cpb.EvidenceBundle, bytes], VerifiedWorker]
TEXT_FIELD_CHARS_MAX = 64  # software version, region, device
FAILURE_MESSAGE_CHARS_MAX = 1024
_JOB_KINDS = frozenset({"started", "chunk", "receipt", "failed", "update"})
UPDATE_CHUNKS_MAX = 64  # chunks in one JobUpdate


def check_hello(hello: wpb.WorkerHello) -> None:
    if not 0 < len(hello.models) <= limits.MODELS_PER_WORKER_MAX:
        raise BadRequest(f"a worker serves 1..{limits.MODELS_PER_WORKER_MAX} models")
    for m in hello.models:
        if not 0 < len(m.encode()) <= limits.MODEL_NAME_BYTES_MAX:
            raise BadRequest(f"model names are 1..{limits.MODEL_NAME_BYTES_MAX} bytes")
    if (
        len(hello.region) > TEXT_FIELD_CHARS_MAX
        or len(hello.software_version) > TEXT_FIELD_CHARS_MAX
    ):
        raise BadRequest(f"region and software version are at most {TEXT_FIELD_CHARS_MAX} chars")
    if hello.max_concurrent_jobs < 1:
        raise BadRequest("max_concurrent_jobs must be at least 1")


def check_job_message(kind: str, msg: wpb.WorkerMessage) -> bytes:
    """The job id of a job message whose fields are within bounds (else BadRequest)."""
    body = getattr(msg, kind)
    job_id = bytes(body.job_id)
    if len(job_id) != limits.JOB_ID_BYTES:
        raise BadRequest(f"{kind}: job id must be {limits.JOB_ID_BYTES} bytes")
    if kind == "chunk":
        _check_chunk(msg.chunk.chunk)
    elif kind == "update":
        u = msg.update
        if len(u.answer_salt) not in (0, ANSWER_SALT_BYTES) or len(u.chunks) > UPDATE_CHUNKS_MAX:
            raise BadRequest("update: answer salt or chunk count out of bounds")
        if len(u.receipt_jws) > limits.RECEIPT_JWS_BYTES_MAX or u.log_index:
            raise BadRequest("update: receipt too large, or a log index from a worker")
        for c in u.chunks:
            _check_chunk(c)
    elif kind == "receipt":
        if len(msg.receipt.jws) > limits.RECEIPT_JWS_BYTES_MAX:
            raise BadRequest(f"receipt exceeds {limits.RECEIPT_JWS_BYTES_MAX} bytes")
    elif kind == "failed":
        f = msg.failed
        if len(f.message) > FAILURE_MESSAGE_CHARS_MAX or (
            len(f.sealed_detail) > limits.REFUSAL_SEALED_BYTES_MAX
        ):
            raise BadRequest("failed: message or sealed detail too large")
    return job_id


def _check_chunk(c: wpb.SealedChunk) -> None:
    if len(c.ciphertext) > limits.CHUNK_CIPHERTEXT_BYTES_MAX or c.index >= limits.ANSWER_CHUNKS_MAX:
        raise BadRequest("chunk: ciphertext or index out of bounds")


def check_heartbeat(hb: wpb.Heartbeat) -> None:
    if len(hb.gpus) > limits.GPUS_PER_BUNDLE_MAX or len(hb.device) > TEXT_FIELD_CHARS_MAX:
        raise BadRequest("heartbeat: too many GPUs or device name too long")


class WorkerLink:
    def __init__(
        self,
        config: GatewayConfig,
        registry: Registry,
        verifier: Verifier,
        clock: Callable[[], datetime],
        store: Store,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._limits = config.limits
        self._registry = registry
        self._verify = verifier
        self._clock = clock
        self._metrics = metrics
        self._admissions = 0
        self._refusals = RateLimitedLog(
            self._limits.error_logs_per_interval_max, self._limits.error_log_interval_s
        )

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.admissions.labels(result).inc()

    def _warn(self, event: str, **kw: object) -> None:
        dropped = self._refusals.allow()
        if dropped is not None:
            log.warning(event, dropped_since_last=dropped, **kw)

    async def _next(
        self, it: AsyncIterator[wpb.WorkerMessage], timeout_s: float, what: str
    ) -> wpb.WorkerMessage:
        try:
            return await asyncio.wait_for(anext(it), timeout_s)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"worker did not send {what} within {timeout_s} s") from exc
        except StopAsyncIteration as exc:
            raise BadRequest(f"worker closed the stream before {what}") from exc

    async def _verify_off_loop(self, bundle: cpb.EvidenceBundle, nonce: bytes) -> VerifiedWorker:
        if bundle.ByteSize() > limits.EVIDENCE_BUNDLE_BYTES_MAX:
            raise BadRequest(f"evidence bundle exceeds {limits.EVIDENCE_BUNDLE_BYTES_MAX} bytes")
        return await asyncio.to_thread(self._verify, bundle, nonce)

    async def connect(
        self, provider_account: str, requests: AsyncIterator[wpb.WorkerMessage]
    ) -> AsyncIterator[wpb.GatewayMessage]:
        self._registry.check_room(provider_account)
        if self._admissions >= self._limits.admissions_pending_max:
            self._count("overloaded")
            raise Overloaded("too many worker admissions in progress; retry later")
        self._admissions += 1
        session: WorkerSession | None = None
        try:
            hello_msg = await self._next(requests, self._limits.hello_timeout_s, "hello")
            if hello_msg.WhichOneof("msg") != "hello":
                raise BadRequest("the first worker message must be hello")
            hello = hello_msg.hello
            check_hello(hello)
            nonce = os.urandom(limits.NONCE_BYTES)
            yield wpb.GatewayMessage(challenge=wpb.Challenge(nonce=nonce))
            ev_msg = await self._next(requests, self._limits.evidence_timeout_s, "evidence")
            if ev_msg.WhichOneof("msg") != "evidence":
                raise BadRequest("the worker must answer the challenge with evidence")
            try:
                verified = await self._verify_off_loop(ev_msg.evidence, nonce)
            except VerifyError as exc:
                self._warn("worker_refused", provider=provider_account, reason=str(exc))
                raise PermissionDenied(f"worker evidence refused: {exc}") from exc
            missing = set(hello.models) - set(verified.models)
            if missing:
                raise PermissionDenied(f"evidence does not bind the weights of {sorted(missing)}")
            session = self._session(provider_account, hello, ev_msg.evidence, verified)
            await self._store.add_evidence(
                verified.evidence_sha256, ev_msg.evidence.SerializeToString(deterministic=True)
            )
            self._registry.add(session)
        finally:
            self._admissions -= 1
            self._count("admitted" if session is not None else "refused")
        wlog = log.bind(worker_id=session.worker_id, provider=provider_account)
        if verified.simulated:
            wlog.warning(
                "admitted_simulated_tee",
                warning="SIMULATED TEE evidence accepted (--allow-simulated-tee): no hardware protection",
            )
        wlog.info(
            "worker_admitted",
            platform=verified.platform,
            root=verified.root,
            models=sorted(verified.models),
            evidence_sha256=verified.evidence_sha256,
        )
        async for msg in self._serve(session, requests):
            yield msg

    def _session(
        self,
        provider_account: str,
        hello: wpb.WorkerHello,
        bundle: cpb.EvidenceBundle,
        verified: VerifiedWorker,
    ) -> WorkerSession:
        return WorkerSession(
            worker_id="w-" + verified.key_id[:16],
            provider_account=provider_account,
            verified=verified,
            evidence=bundle,
            region=hello.region,
            capacity=min(hello.max_concurrent_jobs, self._limits.jobs_in_flight_per_worker_max),
            outbox_max=self._limits.worker_outbox_messages_max,
        )

    async def _serve(
        self, session: WorkerSession, requests: AsyncIterator[wpb.WorkerMessage]
    ) -> AsyncIterator[wpb.GatewayMessage]:
        """Write the session's outbox to the worker until the session ends (the reader, the
        re-challenger or the watchdog finished, or the session was drained)."""
        tasks = (
            asyncio.create_task(self._read(session, requests)),
            asyncio.create_task(self._rechallenge(session)),
            asyncio.create_task(self._watchdog(session)),
        )
        for t in tasks:
            t.add_done_callback(lambda _t: session.end())
        try:
            yield wpb.GatewayMessage(
                admitted=wpb.Admitted(
                    worker_id=session.worker_id, evidence_sha256=session.verified.evidence_sha256
                )
            )
            while (msg := await session.outbox.get()) is not None:
                yield msg
            reader = tasks[0]
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                raise reader.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            self._close(session)
            log.info("worker_disconnected", worker_id=session.worker_id)

    def _close(self, session: WorkerSession) -> None:
        self._registry.remove(session)
        for channel in list(session.jobs.values()):
            channel.close()
        for fut in session.challenges.values():
            if not fut.done():
                fut.cancel()

    async def _read(
        self, session: WorkerSession, requests: AsyncIterator[wpb.WorkerMessage]
    ) -> None:
        async for msg in requests:
            session.last_seen_s = time.monotonic()
            kind = msg.WhichOneof("msg")
            if kind in _JOB_KINDS:
                job_id = check_job_message(kind, msg)
                channel = session.jobs.get(job_id)
                if channel is not None and not channel.offer(msg, msg.ByteSize()):
                    self._warn("job_shed", worker_id=session.worker_id, job_id=job_id.hex())
                    del session.jobs[job_id]
            elif kind == "heartbeat":
                check_heartbeat(msg.heartbeat)
                session.in_flight_reported = min(msg.heartbeat.in_flight, session.capacity)
            elif kind == "evidence":
                fut = session.challenges.get(bytes(msg.evidence.nonce))
                if fut is not None and not fut.done():
                    fut.set_result(msg.evidence)
            elif kind == "draining":
                session.draining = True
                log.info("worker_draining", worker_id=session.worker_id, jobs=len(session.jobs))
                if not session.jobs:
                    return
            else:
                raise BadRequest(f"unexpected worker message {kind!r} on an admitted stream")
        log.info("worker_stream_ended", worker_id=session.worker_id)

    async def _watchdog(self, session: WorkerSession) -> None:
        """Returns (ending the stream) when the worker was silent past the heartbeat timeout."""
        timeout_s = self._limits.heartbeat_timeout_s
        while True:
            idle_s = time.monotonic() - session.last_seen_s
            if idle_s > timeout_s:
                break
            await asyncio.sleep(timeout_s - idle_s + 0.01)
        self._warn("worker_silent", worker_id=session.worker_id, idle_s=round(idle_s, 1))

    def drain(self, session: WorkerSession) -> int:
        """Route no new job to the worker; tell it; close its stream once its jobs are done."""
        session.draining = True
        with contextlib.suppress(Exception):
            session.send(wpb.GatewayMessage(drain=wpb.Drain()))
        if not session.jobs:
            session.end()
        log.info("worker_drain_requested", worker_id=session.worker_id, jobs=len(session.jobs))
        return len(session.jobs)

    async def challenge(
        self, session: WorkerSession, nonce: bytes, timeout_s: float
    ) -> cpb.EvidenceBundle:
        if len(nonce) != limits.NONCE_BYTES:
            raise BadRequest(f"nonce must be {limits.NONCE_BYTES} bytes")
        if nonce in session.challenges:
            raise BadRequest("a challenge with this nonce is already pending")
        fut: asyncio.Future[cpb.EvidenceBundle] = asyncio.get_running_loop().create_future()
        session.challenges[nonce] = fut
        try:
            session.send(wpb.GatewayMessage(challenge=wpb.Challenge(nonce=nonce)))
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError as exc:
            raise DeadlineExceeded("the worker did not answer the challenge in time") from exc
        finally:
            session.challenges.pop(nonce, None)

    async def _rechallenge(self, session: WorkerSession) -> None:
        """Returns (ending the stream) when the worker's evidence no longer passes."""
        wlog = log.bind(worker_id=session.worker_id)
        while True:
            await asyncio.sleep(self._limits.rechallenge_interval_s)
            nonce = os.urandom(limits.NONCE_BYTES)
            try:
                bundle = await self.challenge(session, nonce, self._limits.evidence_timeout_s)
                fresh = await self._verify_off_loop(bundle, nonce)
            except (GatewayError, VerifyError) as exc:
                wlog.warning("worker_evicted", reason=str(exc))
                return
            if fresh.key_id != session.verified.key_id or fresh.models != session.verified.models:
                wlog.warning("worker_evicted", reason="keys or models changed")
                return
            session.attested_at_s = time.monotonic()
            session.attested_at_ms = int(time.time() * 1000)
            wlog.info("worker_rechallenged", evidence_sha256=fresh.evidence_sha256)
