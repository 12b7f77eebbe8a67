"""What operators rely on: per-service health that turns NOT_SERVING before draining, reflection
(on by default, can be turned off), Prometheus metrics, one canonical log line per job, and
graceful draining of a worker (by an operator or by the worker itself)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ccgw.client.errors import GatewayRefused
from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
from tests.support.cluster import Cluster, cluster
from tests.support.fake_engine import EchoEngine

SERVICES = ("ccgw.v1.Gateway", "ccgw.v1.WorkerLink", "ccgw.v1.TransparencyLog")
SLOW_PROMPT = "a b c d e f g h i j"  # 10 tokens at 50 ms each: a job that lasts ~0.5 s


async def in_flight(c: Cluster) -> None:
    for _ in range(500):
        if c.gateway.router.in_flight():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no job in flight")


async def health(c: Cluster, service: str) -> int:
    async with grpc.aio.insecure_channel(c.address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        resp = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        return int(resp.status)


async def test_health_is_per_service_and_not_serving_before_jobs_drain(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await c.add_worker({"echo": EchoEngine(delay_s=0.05)})
        await c.deposit("client:alice", 1_000_000)
        for s in ("", *SERVICES):
            assert await health(c, s) == health_pb2.HealthCheckResponse.SERVING
        client = c.client()
        job = asyncio.create_task(client.complete("echo", prompt=SLOW_PROMPT))
        await in_flight(c)
        stopping = asyncio.create_task(c.gateway.stop(5.0))
        await asyncio.sleep(0.05)
        for s in ("", *SERVICES):
            assert await health(c, s) == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(GatewayRefused) as err:  # no new job while draining
            await c.client("client:bob").complete("echo", prompt="x")
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        answer = await job  # the job in flight finished during the grace period
        assert answer.text.startswith("j i h") and answer.receipt is not None
        await stopping
        c.gateway.stop = _noop  # type: ignore[method-assign]


async def _noop(grace_s: float | None = None) -> None:
    return None


async def _services(address: str) -> list[str]:
    async with grpc.aio.insecure_channel(address) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        async for resp in stub.ServerReflectionInfo(iter([req])):
            return [s.name for s in resp.list_services_response.service]
    return []


async def test_reflection_on_by_default_and_off_on_request(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        names = await _services(c.address)
        assert set(SERVICES) <= set(names) and "grpc.health.v1.Health" in names
    (tmp_path / "off").mkdir()
    async with cluster(tmp_path / "off", reflection=False) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _services(c.address)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def http_get(port: int, path: str) -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return head.split("\r\n")[0], body


async def test_metrics_endpoint_and_one_canonical_log_line_per_job(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    async with cluster(tmp_path / "a", metrics_listen="127.0.0.1:0") as c:
        await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 1_000_000)
        marker = "okapi-91c2-private"
        with structlog.testing.capture_logs() as logs:
            await c.client().complete("echo", prompt=f"{marker} two")
        jobs = [e for e in logs if e.get("event") == "job"]
        assert len(jobs) == 1
        line = jobs[0]
        assert (
            line["outcome"] == "ok" and line["log_index"] == 3
        )  # after the schedule and the deposit and line["chunks"] >= 1
        assert len(line["job_id"]) == 32 and line["account"] == "client:alice"
        assert line["request_bytes"] > 0 and line["answer_bytes"] > 0
        assert marker not in repr(logs)
        await c.gateway.metrics.refresh(c.gateway.store, "network:fee")
        port = c.gateway.metrics_port
        assert port is not None
        status, body = await http_get(port, "/metrics")
        assert status.endswith("200 OK")
        for needle in (
            'ccgw_jobs_total{outcome="ok"} 1.0',
            'ccgw_workers{state="ready"} 1.0',
            "ccgw_log_entries 4.0",  # the price schedule, the release, the deposit, the receipt
            "ccgw_jobs_in_flight 0.0",
            'ccgw_worker_admissions_total{result="admitted"} 1.0',
            "ccgw_job_duration_seconds_count",
        ):
            assert needle in body, needle
        assert "ccgw_ledger_network_fees_micro" in body
        status, _ = await http_get(port, "/other")
        assert status.endswith("404 Not Found")


async def test_operator_drains_a_worker_gracefully(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        agent = await c.add_worker({"echo": EchoEngine(delay_s=0.05)})
        await c.deposit("client:alice", 1_000_000)
        client = c.client()
        job = asyncio.create_task(client.complete("echo", prompt=SLOW_PROMPT))
        await in_flight(c)
        admin = [("authorization", f"Bearer {c.token('admin:ops', 'admin')}")]
        stub = client._stub
        resp = await stub.DrainWorker(
            gpb.DrainWorkerRequest(worker_id=agent.worker_id), metadata=admin
        )
        assert resp.in_flight == 1
        assert await client.workers("echo") == []  # clients are not offered a draining worker
        listed = await stub.ListWorkers(gpb.ListWorkersRequest(model="echo"), metadata=admin)
        assert [w.state for w in listed.workers] == [gpb.DRAINING]
        answer = await job
        assert answer.receipt is not None
        await asyncio.wait_for(c.tasks[0], 5)  # the worker finished and stopped (no reconnect)
        assert len(c.gateway.registry) == 0


async def test_worker_drains_itself_finishing_its_jobs(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        agent = await c.add_worker({"echo": EchoEngine(delay_s=0.05)})
        await c.deposit("client:alice", 1_000_000)
        job = asyncio.create_task(c.client().complete("echo", prompt=SLOW_PROMPT))
        for _ in range(500):  # the job reached the worker (one still on the wire is refused)
            if agent._tasks:
                break
            await asyncio.sleep(0.01)
        assert await agent.drain(5)
        answer = await job
        assert answer.receipt is not None and answer.text.startswith("j i h")
        await asyncio.wait_for(c.tasks[0], 5)
        assert len(c.gateway.registry) == 0
