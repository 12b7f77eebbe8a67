"""Admitted workers, as the gateway sees them: one WorkerSession per open worker stream.

The registry is bounded (limits.workers_max). A session holds the verified identity from the
worker's admission evidence, its live load, an outbox of messages to the worker (bounded), the
jobs in flight on it, and the challenges it has not answered yet.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ccgw.gateway.errors import NotFound, Overloaded, WorkerUnavailable
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.verify.attestation.bundle import VerifiedWorker


@dataclass
class JobChannel:
    """Events from a worker for one job, consumed by the client's Infer stream."""

    job_id: bytes
    events: asyncio.Queue[wpb.WorkerMessage]


@dataclass
class WorkerSession:
    worker_id: str
    provider_account: str
    verified: VerifiedWorker
    evidence: cpb.EvidenceBundle
    region: str
    capacity: int
    outbox: asyncio.Queue[wpb.GatewayMessage]
    admitted_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    last_seen_s: float = field(default_factory=time.monotonic)
    in_flight_reported: int = 0
    jobs: dict[bytes, JobChannel] = field(default_factory=dict)
    challenges: dict[bytes, asyncio.Future[cpb.EvidenceBundle]] = field(default_factory=dict)
    closed: bool = False

    def send(self, msg: wpb.GatewayMessage) -> None:
        if self.closed:
            raise WorkerUnavailable(f"worker {self.worker_id} has disconnected")
        try:
            self.outbox.put_nowait(msg)
        except asyncio.QueueFull as exc:
            raise Overloaded(f"worker {self.worker_id} outbox is full") from exc


class Registry:
    def __init__(self, workers_max: int) -> None:
        self._workers: dict[str, WorkerSession] = {}
        self._workers_max = workers_max

    def add(self, session: WorkerSession) -> None:
        if session.worker_id in self._workers:
            raise Overloaded(f"worker {session.worker_id} is already connected")
        if len(self._workers) >= self._workers_max:
            raise Overloaded("worker registry is full")
        self._workers[session.worker_id] = session

    def remove(self, session: WorkerSession) -> None:
        if self._workers.get(session.worker_id) is session:
            del self._workers[session.worker_id]
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
            if not s.closed and (not model or model in s.verified.models)
        ]

    def __len__(self) -> int:
        return len(self._workers)
