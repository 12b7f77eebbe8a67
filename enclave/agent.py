"""The worker agent: dials out to a gateway, registers with evidence, answers challenges, runs
jobs concurrently and streams sealed chunks and receipts back; reconnects with capped backoff.

Draining (`drain()`, e.g. on SIGTERM, or the gateway's Drain): tell the gateway (it routes no new
job here), refuse new jobs (UNAVAILABLE to the client, which retries elsewhere), let the jobs in
flight finish within a grace period (the rest are cancelled), end the link and stop `run()`. A
gateway message that does not parse ends the session (and the agent reconnects); it never crashes
the worker.

Messages wait in one outbox while the link sends; whatever queued up meanwhile goes out with each
job's consecutive updates merged into one message (`coalesce_updates`): nothing waits for company,
but a busy link sends fewer, larger messages (the gateway relays each as one event)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping

import grpc
import jwt
import structlog

from ccgw.enclave.config import WorkerConfig
from ccgw.enclave.engine import Engine
from ccgw.enclave.errors import EnclaveError, RequestRejected
from ccgw.enclave.evidence_bundle import collect_bundle
from ccgw.enclave.jobs import JobContext, JobRunner
from ccgw.enclave.keys import Keyring
from ccgw.enclave.tee import CpuTee, GpuAttester
from ccgw.enclave.telemetry import Telemetry
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.protos.ccgw.v1 import worker_pb2_grpc as wgrpc
from ccgw.verify import binding, limits

log = structlog.get_logger("enclave.agent")
SOFTWARE_VERSION = "ccgw-worker/0.1.0"


class WorkerAgent:
    def __init__(
        self,
        config: WorkerConfig,
        engines: Mapping[str, Engine],
        cpu: CpuTee,
        gpu: GpuAttester | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._limits = config.limits
        self._engines = dict(engines)
        self._cpu, self._gpu = cpu, gpu
        self._clock = clock
        self.keys = Keyring()
        self._runner = JobRunner(self.keys, self._engines, self._limits, clock)
        self._telemetry = Telemetry(config.device)
        self._tasks: dict[bytes, asyncio.Task[None]] = {}
        self._outbox: asyncio.Queue[wpb.WorkerMessage | None] | None = None
        self.draining = False  # set by drain(): new jobs are refused, then the agent stops
        self._drain_task: asyncio.Task[bool] | None = None
        self._link_closed: asyncio.Event | None = None  # set when the current link has ended
        self.worker_id: str | None = None
        # Our own token's subject: the account receipts name for the reward (not a trust decision).
        self._provider = str(
            jwt.decode(config.provider_token, options={"verify_signature": False}).get("sub", "")
        )
        self.admitted = asyncio.Event()

    def _bundle(self, nonce: bytes) -> cpb.EvidenceBundle:
        return collect_bundle(
            cpu=self._cpu,
            gpu=self._gpu,
            keys=self.keys.public,
            nonce=nonce,
            models={n: e.model_sha256 for n, e in self._engines.items()},
            issued_at_ms=int(self._clock() * 1000),
        )

    async def run(self) -> None:
        """Connect, and reconnect after failures with capped exponential backoff."""
        backoff = self._limits.reconnect_backoff_initial_s
        attempts = 0
        while True:
            attempts += 1
            try:
                async with self._channel() as channel:
                    await self._session(channel)
                    backoff = self._limits.reconnect_backoff_initial_s
            except grpc.aio.AioRpcError as exc:
                log.warning("gateway_stream_failed", code=exc.code().name, details=exc.details())
                if exc.code() in (
                    grpc.StatusCode.UNAUTHENTICATED,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    raise
            finally:
                self.admitted.clear()
                for t in self._tasks.values():
                    t.cancel()
            if self.draining:
                return
            if (
                self._limits.reconnect_attempts_max
                and attempts >= self._limits.reconnect_attempts_max
            ):
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._limits.reconnect_backoff_max_s)

    async def drain(self, grace_s: float, *, announce: bool = True) -> bool:
        """Refuse new jobs (and tell the gateway), let in-flight ones finish within `grace_s` (the
        rest are cancelled), then let the gateway close the link (it does once no job of ours is
        left, including any it dispatched before it heard of the drain), or close it ourselves
        after `drain_close_wait_s`, so that `run()` returns. True when none was cancelled."""
        self.draining = True
        outbox, closed = self._outbox, self._link_closed
        if announce and outbox is not None:
            with contextlib.suppress(asyncio.QueueFull):
                outbox.put_nowait(wpb.WorkerMessage(draining=wpb.WorkerDraining()))
        pending = list(self._tasks.values())
        left: set[asyncio.Task[None]] = set()
        if pending:
            _, left = await asyncio.wait(pending, timeout=grace_s)
            for t in left:
                t.cancel()
        log.info("drained", finished=len(pending) - len(left), cancelled=len(left))
        if outbox is not None and closed is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), self._limits.drain_close_wait_s)
            await outbox.put(None)  # the receipts queued before it still go out
        return not left

    def _channel(self) -> grpc.aio.Channel:
        options = [("grpc.max_receive_message_length", limits.SEALED_REQUEST_BYTES_MAX + 65536)]
        if self._config.tls_ca_pem is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=self._config.tls_ca_pem)
            return grpc.aio.secure_channel(self._config.gateway, creds, options=options)
        return grpc.aio.insecure_channel(self._config.gateway, options=options)

    async def _session(self, channel: grpc.aio.Channel) -> None:
        outbox: asyncio.Queue[wpb.WorkerMessage | None] = asyncio.Queue(
            self._limits.outbox_messages_max
        )
        self._outbox = outbox
        self._link_closed = asyncio.Event()
        hello = wpb.WorkerHello(
            models=sorted(self._engines),
            software_version=SOFTWARE_VERSION,
            max_concurrent_jobs=self._limits.jobs_in_flight_max,
            region=self._config.region,
        )

        lim = self._limits

        async def requests() -> AsyncIterator[wpb.WorkerMessage]:
            yield wpb.WorkerMessage(hello=hello)
            ended = False
            while not ended and (m := await outbox.get()) is not None:
                batch, ended = coalesce_updates(
                    m, outbox, lim.update_chunks_max, lim.update_bytes_max
                )
                for out in batch:
                    yield out

        stub = wgrpc.WorkerLinkStub(channel)
        call = stub.Connect(
            requests(), metadata=[("authorization", f"Bearer {self._config.provider_token}")]
        )
        admission_digest: str | None = None
        ctx: JobContext | None = None
        heartbeats = asyncio.create_task(self._heartbeats(outbox))
        try:
            async for gm in call:
                if not isinstance(gm, wpb.GatewayMessage):  # bytes that did not parse
                    log.warning("gateway_message_unparsable")
                    return
                kind = gm.WhichOneof("msg")
                if kind == "challenge":
                    bundle = await asyncio.to_thread(self._bundle, bytes(gm.challenge.nonce))
                    if admission_digest is None:
                        admission_digest = binding.evidence_sha256(bundle)
                    await outbox.put(wpb.WorkerMessage(evidence=bundle))
                elif kind == "admitted":
                    if admission_digest is None or gm.admitted.evidence_sha256 != admission_digest:
                        log.error("admission_digest_mismatch")
                        return
                    ctx = JobContext(gm.admitted.worker_id, admission_digest, self._provider)
                    self.worker_id = ctx.worker_id
                    self.admitted.set()
                    log.info("admitted", worker_id=ctx.worker_id)
                elif kind == "job" and ctx is not None:
                    self._start_job(gm.job.request, ctx, outbox)
                elif kind == "cancel":
                    task = self._tasks.get(bytes(gm.cancel.job_id))
                    if task is not None:
                        task.cancel()
                elif kind == "drain" and self._drain_task is None:  # the operator drains us
                    self._drain_task = asyncio.create_task(
                        self.drain(self._limits.drain_timeout_s, announce=False)
                    )
        finally:
            heartbeats.cancel()
            self._outbox = None
            if self._link_closed is not None:
                self._link_closed.set()
            with contextlib.suppress(asyncio.QueueFull):
                outbox.put_nowait(None)

    def _start_job(
        self,
        sealed: cpb.SealedRequest,
        ctx: JobContext,
        outbox: asyncio.Queue[wpb.WorkerMessage | None],
    ) -> None:
        try:
            job_id = bytes(cpb.RoutingHeader.FromString(sealed.header).job_id)
        except Exception:  # noqa: BLE001 - unparsable header: the runner reports it below
            job_id = b""
        if job_id in self._tasks:
            outbox.put_nowait(_failed(job_id, wpb.REPLAYED, "job id already running here"))
            return
        if self.draining:  # ENGINE_ERROR is UNAVAILABLE to the client: it retries another worker
            outbox.put_nowait(_failed(job_id, wpb.ENGINE_ERROR, "worker is shutting down"))
            return
        if len(self._tasks) >= self._limits.jobs_in_flight_max:
            outbox.put_nowait(_failed(job_id, wpb.OVERLOADED, "worker is at capacity"))
            return
        task = asyncio.create_task(self._run_job(sealed, ctx, job_id, outbox))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job_id, None))

    async def _run_job(
        self,
        sealed: cpb.SealedRequest,
        ctx: JobContext,
        job_id: bytes,
        outbox: asyncio.Queue[wpb.WorkerMessage | None],
    ) -> None:
        try:
            async for msg in self._runner.run(sealed, ctx):
                await outbox.put(msg)
        except asyncio.CancelledError:
            outbox.put_nowait(_failed(job_id, wpb.CANCELLED, "job cancelled"))
            raise
        except RequestRejected as exc:
            log.info("job_rejected", job_id=job_id.hex(), code=exc.code, reason=str(exc))
            await outbox.put(_failed(job_id, wpb.FailureCode.Value(exc.code), str(exc)))
        except EnclaveError as exc:
            log.warning("job_failed", job_id=job_id.hex(), error=exc.__class__.__name__)
            await outbox.put(_failed(job_id, wpb.ENGINE_ERROR, "inference failed"))
        except Exception:
            log.exception("job_internal_error", job_id=job_id.hex())
            await outbox.put(_failed(job_id, wpb.ENGINE_ERROR, "internal error"))

    async def _heartbeats(self, outbox: asyncio.Queue[wpb.WorkerMessage | None]) -> None:
        while True:
            await asyncio.sleep(self._limits.heartbeat_interval_s)
            hb = self._telemetry.heartbeat(len(self._tasks), self._limits.jobs_in_flight_max)
            await outbox.put(wpb.WorkerMessage(heartbeat=hb))


def _job_of(m: wpb.WorkerMessage) -> bytes | None:
    kind = m.WhichOneof("msg")
    body = getattr(m, kind) if kind else None
    if body is None or "job_id" not in body.DESCRIPTOR.fields_by_name:
        return None
    return bytes(body.job_id)


def coalesce_updates(
    first: wpb.WorkerMessage,
    outbox: asyncio.Queue[wpb.WorkerMessage | None],
    chunks_max: int,
    bytes_max: int,
) -> tuple[list[wpb.WorkerMessage], bool]:
    """`first` and every message queued behind it now, in order, except that an update of a job
    is merged into that job's previous update when nothing of the job came between them, the
    previous one has no receipt yet (a receipt ends a job's answer), the later one carries no
    answer salt (only a job's first update does), and the merged update stays within
    `chunks_max` chunks and `bytes_max` bytes. Returns (messages, whether the end of the outbox
    (None) was taken)."""
    out = [first]
    growing: dict[bytes, tuple[wpb.JobUpdate, int]] = {}  # job -> (its open update, bytes)

    def note(m: wpb.WorkerMessage) -> None:
        job = _job_of(m)
        if job is None:
            return
        if m.WhichOneof("msg") == "update" and not m.update.receipt_jws:
            growing[job] = (m.update, m.ByteSize())
        else:
            growing.pop(job, None)

    note(first)
    while not outbox.empty():
        m = outbox.get_nowait()
        if m is None:
            return out, True
        if m.WhichOneof("msg") == "update":
            u, job = m.update, bytes(m.update.job_id)
            open_ = growing.get(job)
            if open_ is not None and not u.answer_salt:
                prev, size = open_
                more = m.ByteSize()
                if len(prev.chunks) + len(u.chunks) <= chunks_max and size + more <= bytes_max:
                    prev.chunks.extend(u.chunks)
                    if u.receipt_jws:
                        prev.receipt_jws = u.receipt_jws
                        del growing[job]
                    else:
                        growing[job] = (prev, size + more)
                    continue
        out.append(m)
        note(m)
    return out, False


def _failed(job_id: bytes, code: int, message: str) -> wpb.WorkerMessage:
    return wpb.WorkerMessage(failed=wpb.JobFailed(job_id=job_id, code=code, message=message))  # type: ignore[arg-type]
