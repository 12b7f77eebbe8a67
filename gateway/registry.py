"""Admitted workers, as the gateway sees them: one WorkerSession per open worker stream.

The registry is bounded (limits.workers_max, and workers_per_provider_max per provider account). A
session holds the verified identity from the worker's admission evidence, its live load, an outbox
of messages to the worker (bounded: `send` refuses beyond `outbox_max`), the jobs in flight on it,
and the challenges it has not answered yet. A draining session takes no new job.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from ccgw.gateway.errors import NotFound, Overloaded, PermissionDenied, WorkerUnavailable
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.verify.attestation.bundle import VerifiedWorker

# Put on a JobChannel when the worker's stream closed or the job must stop (deadline, shed).
CLOSED = wpb.WorkerMessage()


@dataclass
class JobChannel:
    """Events from a worker for one job, consumed by the client's Infer stream. The queue itself
    is unbounded so that a closing sentinel always fits; `offer` bounds what a worker may buffer
    (events and bytes) and reports a job that must be shed."""

    job_id: bytes
    events: asyncio.Queue[wpb.WorkerMessage] = field(default_factory=asyncio.Queue)
    events_max: int = 256
    bytes_max: int = 1 << 20
    buffered_bytes: int = 0
    shed: bool = False

    def offer(self, msg: wpb.WorkerMessage, size: int) -> bool:
        """Queue a worker message; False (and the job marked shed) when it would exceed a bound."""
        if self.events.qsize() >= self.events_max or self.buffered_bytes + size > self.bytes_max:
            self.shed = True
            self.events.put_nowait(CLOSED)
            return False
        self.buffered_bytes += size
        self.events.put_nowait(msg)
        return True

    def close(self) -> None:
        self.events.put_nowait(CLOSED)


@dataclass
class WorkerSession:
    worker_id: str
    provider_account: str
    verified: VerifiedWorker
    evidence: cpb.EvidenceBundle
    region: str
    capacity: int
    outbox_max: int = 256
    outbox: asyncio.Queue[wpb.GatewayMessage | None] = field(default_factory=asyncio.Queue)
    admitted_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    attested_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    attested_at_s: float = field(default_factory=time.monotonic)  # last verified gateway nonce
    last_seen_s: float = field(default_factory=time.monotonic)
    in_flight_reported: int = 0
    jobs: dict[bytes, JobChannel] = field(default_factory=dict)
    challenges: dict[bytes, asyncio.Future[cpb.EvidenceBundle]] = field(default_factory=dict)
    closed: bool = False
    draining: bool = False
    suspended: bool = False  # by a reproduced dispute: no new job, ever (ADR 14)

    def send(self, msg: wpb.GatewayMessage) -> None:
        if self.closed:
            raise WorkerUnavailable(f"worker {self.worker_id} has disconnected")
        if self.outbox.qsize() >= self.outbox_max:
            raise Overloaded(f"worker {self.worker_id} outbox is full")
        self.outbox.put_nowait(msg)

    def end(self) -> None:
        """Ask the stream's writer to finish (always fits: the queue is bounded by `send`)."""
        self.outbox.put_nowait(None)

    @property
    def state(self) -> str:
        return "draining" if self.draining else "ready"


class Registry:
    def __init__(self, workers_max: int, workers_per_provider_max: int = 256) -> None:
        self._workers: dict[str, WorkerSession] = {}
        self._workers_max = workers_max
        self._per_provider_max = workers_per_provider_max
        self._per_provider: Counter[str] = Counter()
        # Workers a reproduced dispute suspended (ADR 14): never routed to, never re-admitted.
        self.suspended: set[str] = set()

    def suspend(self, *worker_ids: str) -> None:
        self.suspended.update(worker_ids)
        for w in worker_ids:
            s = self._workers.get(w)
            if s is not None:
                s.suspended = True

    def check_room(self, provider_account: str) -> None:
        """Refuse early (before verifying evidence) when no session could be added."""
        if len(self._workers) >= self._workers_max:
            raise Overloaded("worker registry is full")
        if self._per_provider[provider_account] >= self._per_provider_max:
            raise Overloaded(f"provider {provider_account} has {self._per_provider_max} workers")

    def add(self, session: WorkerSession) -> None:
        if session.worker_id in self.suspended:
            raise PermissionDenied(f"worker {session.worker_id} is suspended by a dispute")
        if session.worker_id in self._workers:
            raise Overloaded(f"worker {session.worker_id} is already connected")
        self.check_room(session.provider_account)
        self._workers[session.worker_id] = session
        self._per_provider[session.provider_account] += 1

    def remove(self, session: WorkerSession) -> None:
        if self._workers.get(session.worker_id) is session:
            del self._workers[session.worker_id]
            self._per_provider[session.provider_account] -= 1
            if self._per_provider[session.provider_account] <= 0:
                del self._per_provider[session.provider_account]
        session.closed = True

    def get(self, worker_id: str) -> WorkerSession:
        s = self._workers.get(worker_id)
        if s is None or s.closed:
            raise NotFound(f"no admitted worker {worker_id!r}")
        return s

    def serving(self, model: str) -> list[WorkerSession]:
        return [
            s
            for s in self._workers.values()
            if not s.closed and not s.suspended and (not model or model in s.verified.models)
        ]

    def sessions(self) -> list[WorkerSession]:
        return list(self._workers.values())

    def __len__(self) -> int:
        return len(self._workers)
