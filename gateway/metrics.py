"""Prometheus metrics of one gateway, served on their own HTTP port (`metrics_listen`).

Counters and histograms are updated by the job path (gateway.jobs) and the worker link; gauges
are read when scraped: workers by state, jobs in flight, queue depths (worker outboxes, buffered
job events). Log and ledger numbers come from the Store's read methods (log size, latest
checkpoint, the network fee account's balance), refreshed every `metrics_refresh_s` by a
background task, never per job and never on the scrape path.

The HTTP endpoint runs on the gateway's event loop (no thread reads its structures): GET /metrics
only, requests bounded in size and time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ccgw.gateway.registry import Registry
from ccgw.gateway.store.base import Store

log = structlog.get_logger("gateway.metrics")

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
REQUEST_BYTES_MAX = 8192
REQUEST_TIMEOUT_S = 5.0


class _Live(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        sessions = m.registry.sessions()
        workers = GaugeMetricFamily("ccgw_workers", "Admitted workers by state", labels=["state"])
        for state in ("ready", "draining"):
            workers.add_metric([state], sum(1 for s in sessions if s.state == state))
        yield workers
        yield GaugeMetricFamily("ccgw_jobs_in_flight", "Jobs in flight", value=m.in_flight())
        yield GaugeMetricFamily(
            "ccgw_worker_outbox_messages",
            "Messages queued to workers (all outboxes)",
            value=sum(s.outbox.qsize() for s in sessions),
        )
        yield GaugeMetricFamily(
            "ccgw_job_events_buffered",
            "Worker events buffered for clients (all jobs)",
            value=sum(c.events.qsize() for s in sessions for c in s.jobs.values()),
        )
        yield GaugeMetricFamily("ccgw_log_entries", "Receipts in the log", value=m.log_entries)
        yield GaugeMetricFamily(
            "ccgw_log_checkpoint_size", "Size of the latest signed checkpoint", value=m.checkpoint
        )
        yield GaugeMetricFamily(
            "ccgw_ledger_network_fees_micro",
            "Balance of the network fee account (micro-tokens)",
            value=m.network_fees_micro,
        )
        yield GaugeMetricFamily(
            "ccgw_ledger_held_micro",
            "Micro-tokens held for jobs in flight on this gateway",
            value=m.held_micro(),
        )


class GatewayMetrics:
    def __init__(
        self,
        registry: Registry,
        in_flight: Callable[[], int],
        held_micro: Callable[[], int],
    ) -> None:
        self.registry = registry
        self.in_flight, self.held_micro = in_flight, held_micro
        self.log_entries = 0
        self.checkpoint = 0
        self.network_fees_micro = 0
        self.prom = CollectorRegistry(auto_describe=True)
        self.jobs = Counter("ccgw_jobs", "Jobs by outcome", ["outcome"], registry=self.prom)
        self.job_seconds = Histogram(
            "ccgw_job_duration_seconds",
            "Job duration, admission to last event, by outcome",
            ["outcome"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.prom,
        )
        self.first_event_seconds = Histogram(
            "ccgw_job_first_event_seconds",
            "Admission to the worker's job start",
            buckets=LATENCY_BUCKETS_S,
            registry=self.prom,
        )
        self.settle_seconds = Histogram(
            "ccgw_job_settle_seconds",
            "Receipt verification and settlement",
            buckets=LATENCY_BUCKETS_S,
            registry=self.prom,
        )
        self.settled_cost = Counter(
            "ccgw_settled_cost_micro",
            "Cost of jobs settled here (micro-tokens)",
            registry=self.prom,
        )
        self.admissions = Counter(
            "ccgw_worker_admissions", "Worker admissions by result", ["result"], registry=self.prom
        )
        self.prom.register(_Live(self))

    def render(self) -> bytes:
        return generate_latest(self.prom)

    async def refresh(self, store: Store, network_account: str) -> None:
        self.log_entries = await store.log_size()
        latest = await store.latest_checkpoint()
        self.checkpoint = latest[0] if latest else 0
        self.network_fees_micro = (await store.balance(network_account))[0]

    async def refresh_forever(self, store: Store, network_account: str, every_s: float) -> None:
        while True:
            try:
                await self.refresh(store, network_account)
            except Exception as exc:  # noqa: BLE001 - a metrics refresh never stops the gateway
                log.warning("metrics_refresh_failed", error=exc.__class__.__name__)
            await asyncio.sleep(every_s)


async def serve_metrics(metrics: GatewayMetrics, listen: str) -> asyncio.Server:
    """GET /metrics on `listen` (host:port; port 0 picks one: see server.sockets)."""
    host, _, port = listen.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            if len(head) > REQUEST_BYTES_MAX:
                raise ValueError("request too large")
            method, path, *_ = [*head.split(b"\r\n", 1)[0].split(b" "), b"", b""]
            if method == b"GET" and path.split(b"?")[0] == b"/metrics":
                body, status = metrics.render(), b"200 OK"
                ctype = b"text/plain; version=0.0.4; charset=utf-8"
            else:
                body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: "
                + ctype
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(
        handle, host or "127.0.0.1", int(port), limit=REQUEST_BYTES_MAX
    )
