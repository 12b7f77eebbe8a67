"""The gateway's side of a worker stream: admission, dispatch of worker messages, re-challenges.

Admission (DESIGN.md step 2): the worker says hello; the gateway sends a fresh 32-byte nonce; the
worker answers with an evidence bundle for that nonce; the gateway verifies it against its policy
(the simulated root only when explicitly allowed, with a warning on every admission) and admits the
worker under an id derived from its attested key. Afterwards the gateway re-challenges on a schedule
and evicts a worker whose evidence goes stale, stops verifying, or changes keys; a worker silent for
longer than the heartbeat timeout is evicted too.
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
from ccgw.gateway.errors import BadRequest, DeadlineExceeded, PermissionDenied
from ccgw.gateway.registry import Registry, WorkerSession
from ccgw.gateway.store.base import Store
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.verify import limits
from ccgw.verify.attestation.bundle import VerifiedWorker
from ccgw.verify.errors import VerifyError

log = structlog.get_logger("gateway.worker_link")

Verifier = Callable[[cpb.EvidenceBundle, bytes], VerifiedWorker]


class WorkerLink:
    def __init__(
        self,
        config: GatewayConfig,
        registry: Registry,
        verifier: Verifier,
        clock: Callable[[], datetime],
        store: Store,
    ) -> None:
        self._store = store
        self._config = config
        self._limits = config.limits
        self._registry = registry
        self._verify = verifier
        self._clock = clock

    async def _next(
        self, it: AsyncIterator[wpb.WorkerMessage], timeout_s: float, what: str
    ) -> wpb.WorkerMessage:
        try:
            return await asyncio.wait_for(anext(it), timeout_s)
        except TimeoutError as exc:
            raise DeadlineExceeded(f"worker did not send {what} within {timeout_s} s") from exc
        except StopAsyncIteration as exc:
            raise BadRequest(f"worker closed the stream before {what}") from exc

    async def connect(
        self, provider_account: str, requests: AsyncIterator[wpb.WorkerMessage]
    ) -> AsyncIterator[wpb.GatewayMessage]:
        hello_msg = await self._next(requests, self._limits.hello_timeout_s, "hello")
        if hello_msg.WhichOneof("msg") != "hello":
            raise BadRequest("the first worker message must be hello")
        hello = hello_msg.hello
        if not hello.models or len(hello.models) > limits.MODELS_PER_WORKER_MAX:
            raise BadRequest(f"a worker serves 1..{limits.MODELS_PER_WORKER_MAX} models")
        nonce = os.urandom(limits.NONCE_BYTES)
        yield wpb.GatewayMessage(challenge=wpb.Challenge(nonce=nonce))
        ev_msg = await self._next(requests, self._limits.evidence_timeout_s, "evidence")
        if ev_msg.WhichOneof("msg") != "evidence":
            raise BadRequest("the worker must answer the challenge with evidence")
        try:
            verified = self._verify(ev_msg.evidence, nonce)
        except VerifyError as exc:
            log.warning("worker_refused", provider=provider_account, reason=str(exc))
            raise PermissionDenied(f"worker evidence refused: {exc}") from exc
        missing = set(hello.models) - set(verified.models)
        if missing:
            raise PermissionDenied(f"evidence does not bind the weights of {sorted(missing)}")
        session = WorkerSession(
            worker_id="w-" + verified.key_id[:16],
            provider_account=provider_account,
            verified=verified,
            evidence=ev_msg.evidence,
            region=hello.region[:64],
            capacity=max(
                1, min(hello.max_concurrent_jobs, self._limits.jobs_in_flight_per_worker_max)
            ),
            outbox=asyncio.Queue(self._limits.worker_outbox_messages_max),
        )
        await self._store.add_evidence(
            verified.evidence_sha256, ev_msg.evidence.SerializeToString(deterministic=True)
        )
        self._registry.add(session)
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
        reader = asyncio.create_task(self._read(session, requests))
        rechallenger = asyncio.create_task(self._rechallenge(session))
        try:
            yield wpb.GatewayMessage(
                admitted=wpb.Admitted(
                    worker_id=session.worker_id, evidence_sha256=verified.evidence_sha256
                )
            )
            while True:
                get = asyncio.create_task(session.outbox.get())
                done, _ = await asyncio.wait(
                    {get, reader, rechallenger}, return_when=asyncio.FIRST_COMPLETED
                )
                if get not in done:
                    get.cancel()
                    break
                yield get.result()
        finally:
            reader.cancel()
            rechallenger.cancel()
            self._close(session)
            wlog.info("worker_disconnected")

    def _close(self, session: WorkerSession) -> None:
        self._registry.remove(session)
        for channel in list(session.jobs.values()):
            with contextlib.suppress(asyncio.QueueFull):
                channel.events.put_nowait(wpb.WorkerMessage())  # empty = disconnected
        for fut in session.challenges.values():
            if not fut.done():
                fut.cancel()

    async def _read(
        self, session: WorkerSession, requests: AsyncIterator[wpb.WorkerMessage]
    ) -> None:
        wlog = log.bind(worker_id=session.worker_id)
        while True:
            try:
                msg = await asyncio.wait_for(anext(requests), self._limits.heartbeat_timeout_s)
            except (TimeoutError, StopAsyncIteration):
                wlog.info("worker_stream_ended")
                return
            session.last_seen_s = time.monotonic()
            kind = msg.WhichOneof("msg")
            if kind == "heartbeat":
                session.in_flight_reported = msg.heartbeat.in_flight
            elif kind == "evidence":
                fut = session.challenges.get(bytes(msg.evidence.nonce))
                if fut is not None and not fut.done():
                    fut.set_result(msg.evidence)
            elif kind in ("started", "chunk", "receipt", "failed"):
                job_id = bytes(getattr(msg, kind).job_id)
                channel = session.jobs.get(job_id)
                if channel is None:
                    wlog.info("message_for_unknown_job", kind=kind)
                    continue
                try:
                    channel.events.put_nowait(msg)
                except asyncio.QueueFull:
                    wlog.warning("job_event_buffer_full")
                    session.jobs.pop(job_id, None)
            else:
                wlog.warning("unexpected_worker_message", kind=kind)
                return

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
                fresh = self._verify(bundle, nonce)
            except (DeadlineExceeded, VerifyError) as exc:
                wlog.warning("worker_evicted", reason=str(exc))
                return
            if fresh.key_id != session.verified.key_id or fresh.models != session.verified.models:
                wlog.warning("worker_evicted", reason="keys or models changed")
                return
            wlog.info("worker_rechallenged", evidence_sha256=fresh.evidence_sha256)
