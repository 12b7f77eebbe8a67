"""The whole path on loopback: real gateway, real worker agent on the simulated TEE, real client."""

from __future__ import annotations

from pathlib import Path

from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from tests.support.cluster import cluster
from tests.support.fake_engine import EchoEngine


async def test_happy_path_end_to_end(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 1_000_000)
        client = c.client()
        answer = await client.complete("echo", prompt="one two three", max_new_tokens=8)
        assert answer.text == "three two one "
        assert answer.receipt is not None
        assert answer.receipt.output_tokens == 3 and answer.receipt.input_tokens == 3
        assert answer.log_index == 3  # after the price schedule, the release and the deposit
        provider = await c.gateway.store.balance("provider:p1")
        alice = await c.gateway.store.balance("client:alice")
        assert provider[0] > 0
        assert alice == (
            1_000_000 - provider[0] - (await c.gateway.store.balance("network:fee"))[0],
            0,
        )


async def test_gateway_without_allow_simulated_refuses_the_simulated_worker(tmp_path: Path) -> None:
    import asyncio

    import grpc
    import pytest

    async with cluster(
        tmp_path,
    ) as c:
        from ccgw.gateway.server import load_policy

        # Same gateway process, but its verifier uses the default (production) policy.
        strict, roots = load_policy(type(c.gateway.router._config)(auth_public_keys_pem=()))
        from ccgw.verify.attestation.bundle import verify_bundle

        link = c.gateway.server  # noqa: F841 - keep the server running
        import datetime as dt

        def strict_verify(bundle: cpb.EvidenceBundle, nonce: bytes):  # type: ignore[no-untyped-def]
            return verify_bundle(
                bundle,
                strict,
                roots.with_simulated(c.vendor.root_pem()),
                dt.datetime.now(dt.UTC),
                expected_nonce=nonce,
            )

        c.gateway_link()._verify = strict_verify
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(c.add_worker({"echo": EchoEngine()}), 10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "not an accepted root" in (err.value.details() or "")
        assert len(c.gateway.registry) == 0


async def test_worker_whose_report_does_not_bind_its_keys_is_refused(tmp_path: Path) -> None:
    import asyncio

    import grpc
    import pytest

    from ccgw.simtee import SimulatedSnpTee

    class LyingTee(SimulatedSnpTee):
        def attest(self, report_data: bytes):  # type: ignore[no-untyped-def]
            return super().attest(bytes(64))

    async with cluster(tmp_path) as c:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(c.add_worker({"echo": EchoEngine()}, tee=LyingTee(c.vendor)), 10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "report_data does not bind" in (err.value.details() or "")


async def test_post_quantum_suite_end_to_end(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 1_000_000)
        answer = await c.client().complete(
            "echo", prompt="a b", suite=cpb.MLKEM768X25519_SHA256_CHACHA20POLY1305
        )
        assert answer.text == "b a "


async def test_client_challenge_gets_fresh_evidence_for_its_nonce(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        agent = await c.add_worker({"echo": EchoEngine()})
        client = c.client()
        fresh = await client.challenge(agent.worker_id or "")
        assert fresh.key_id == agent.keys.key_id
