"""Released worker software end to end (ADR 10, issue 8): the client, the gateway and the auditor
each trust a worker only under a release signed by a trusted key, in the log (under a checkpoint
the client verified itself), unrevoked and valid; each refuses forged, altered, unlogged, revoked
and expired releases, and the client refuses a log that forks or proves what it does not hold."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.client.audit import Auditor, Report
from ccgw.client.errors import NoTrustedWorker, ReleaseLogRejected
from ccgw.client.releases import ReleaseFollower
from ccgw.client.sdk import UnreleasedSoftwareWarning
from ccgw.gateway.config import GatewayLimits
from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
from ccgw.protos.ccgw.v1 import gateway_pb2_grpc as ggrpc
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc
from ccgw.simtee import SimulatedSnpTee
from ccgw.verify import log_entries as le
from ccgw.verify.attestation.bundle import UNRELEASED_SKIP
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.report import Status
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.release.manifest import (
    Revocation,
    SignedManifest,
    sign_revocation,
)
from tests.support.cluster import Cluster, cluster
from tests.support.fake_engine import EchoEngine

OTHER = bytes.fromhex("11" * 48)  # a launch measurement no release lists
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
EXPIRED = (NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=1))
LIMITS = GatewayLimits(checkpoint_every_entries=1)


def unreleased_policy() -> Policy:
    return dataclasses.replace(Policy().allowing_simulated(), accept_unreleased=True)


def auditor(c: Cluster, ch: grpc.aio.Channel, state: Path | None = None) -> Auditor:
    assert c.log is not None
    roots = RootStore.default().with_simulated(c.vendor.root_pem())
    return Auditor(
        ch,
        c.log,
        Policy().allowing_simulated(),
        roots,
        state_path=state,
        release_keys=c.release_trust().keys,
    )


async def audit(c: Cluster) -> Report:
    async with grpc.aio.insecure_channel(c.address) as ch:
        return await auditor(c, ch).run()


def altered(doc: SignedManifest) -> SignedManifest:
    """The same signature over a manifest with one more launch measurement."""
    m = doc.manifest
    extra = dataclasses.replace(m.launch[0], measurement=OTHER.hex())
    return SignedManifest(dataclasses.replace(m, launch=(*m.launch, extra)), doc.signature)


@contextlib.asynccontextmanager
async def lenient(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A gateway that admits any software (a careless or hostile operator's) and logs whatever it
    is handed, while clients and the auditor follow the cluster's release key."""
    async with cluster(
        tmp_path, limits=LIMITS, release_keys_pem=(), accept_unreleased_software=True
    ) as c:
        yield c


async def log_raw(c: Cluster, doc: Any) -> int:
    """Append a release or revocation entry straight to the store (no gateway key check)."""
    return (await c.gateway.store.append(le.release_entry(doc))).log_index


async def job_on(c: Cluster, tee: SimulatedSnpTee | None = None) -> None:
    """Admit a worker on the lenient gateway and run one job there (the client accepts it on
    purpose), so that the log holds its receipt for the auditor."""
    await c.add_worker({"echo": EchoEngine()}, tee=tee, release=False)
    await c.deposit("client:bob", 1_000_000)
    careless = c.client("client:bob", policy=unreleased_policy(), releases=False)
    with pytest.warns(UnreleasedSoftwareWarning):
        await careless.complete("echo", prompt="a b")


# -- the default path -------------------------------------------------------------------------


async def test_released_worker_verifies_end_to_end(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await c.add_worker({"echo": EchoEngine()})  # publishes release test-1 through the RPC
        await c.deposit("client:alice", 1_000_000)
        client = c.client()
        answer = await client.complete("echo", prompt="one two")
        assert answer.text == "two one "
        release = c.published[0]
        named = f"release test-1 ({release.digest[:16]}, log index 1)"
        assert answer.worker is not None and answer.worker.verified.release.startswith(named)
        assert answer.report is not None
        check = answer.report.check("release.inclusion")
        assert check.status is Status.PASS and check.enforced and check.seen.startswith(named)
        assert client.release_checkpoint is not None and client.release_checkpoint.size > 1
        [session] = c.gateway.registry.serving("echo")
        assert session.verified.release.startswith(named)  # the gateway admitted it under it
        rep = await audit(c)
        assert rep.ok, rep.problems
        assert list(rep.job_releases.values()) == [answer.worker.verified.release]


async def test_unreleased_image_is_refused_naming_measurement_and_releases(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await c.add_worker({"echo": EchoEngine()})  # test-1 lists the simulated measurement only
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await c.add_worker(
                {"echo": EchoEngine()},
                tee=SimulatedSnpTee(c.vendor, measurement=OTHER),
                release=False,
            )
        why = refused.value.details() or ""
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert OTHER.hex() in why and "test-1" in why and "measurement not listed" in why


async def test_client_and_auditor_refuse_an_unreleased_worker(tmp_path: Path) -> None:
    async with lenient(tmp_path) as c:
        await log_raw(c, c.release_for({"echo": EchoEngine()}))  # allows the simulated image
        await job_on(c, SimulatedSnpTee(c.vendor, measurement=OTHER))
        client = c.client()
        with pytest.raises(NoTrustedWorker):
            await client.complete("echo", prompt="x")
        [why] = client.rejected.values()
        assert OTHER.hex() in why and "test-1" in why and "measurement not listed" in why
        report = client.reports[next(iter(client.rejected))]
        assert report.check("release.inclusion").status is Status.FAIL and not report.trusted
        rep = await audit(c)
        assert {p.kind for p in rep.problems} == {"unreleased_worker"} and rep.exit_code == 1
        assert OTHER.hex() in rep.problems[0].detail
        assert list(rep.job_releases.values()) == [""]


async def test_model_digest_pinned_by_the_release(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await c.add_worker({"echo": EchoEngine()})
        other_weights = EchoEngine()
        other_weights.model_sha256 = bytes(32)  # other weights under the released name
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await c.add_worker({"echo": other_weights}, release=False)
        assert "model 'echo' has digest 0000000000000000" in (refused.value.details() or "")


# -- forged, altered, unlogged, revoked, expired ------------------------------------------------


async def test_gateway_refuses_to_publish_forged_altered_or_garbage(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        good = c.release_for({"echo": EchoEngine()})
        forged = c.release_for({"echo": EchoEngine()}, key=Ed25519PrivateKey.generate())
        async with grpc.aio.insecure_channel(c.address) as ch:
            stub = ggrpc.GatewayStub(ch)

            async def publish(doc: bytes, role: str = "admin") -> grpc.StatusCode:
                md = [("authorization", f"Bearer {c.token('x:ops', role)}")]
                try:
                    await stub.PublishRelease(gpb.PublishReleaseRequest(document=doc), metadata=md)
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK

            assert await publish(forged.to_bytes()) == grpc.StatusCode.PERMISSION_DENIED
            assert await publish(altered(good).to_bytes()) == grpc.StatusCode.PERMISSION_DENIED
            assert await publish(b'{"manifest": 1}') == grpc.StatusCode.INVALID_ARGUMENT
            assert await publish(good.to_bytes(), "client") == grpc.StatusCode.PERMISSION_DENIED
            assert await c.gateway.store.release_entries(0, 10) == []  # nothing was logged
            assert await publish(good.to_bytes()) == grpc.StatusCode.OK
            assert await publish(good.to_bytes()) == grpc.StatusCode.OK  # idempotent
            assert len(await c.gateway.store.release_entries(0, 10)) == 1


@pytest.mark.parametrize("case", ["wrong_key", "altered", "not_logged", "revoked", "expired"])
async def test_gateway_refuses_workers_under_bad_releases(tmp_path: Path, case: str) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        engines = {"echo": EchoEngine()}
        if case == "wrong_key":  # logged by a gateway that trusted another key; this one won't
            await c.gateway.store.append(
                le.release_entry(c.release_for(engines, key=Ed25519PrivateKey.generate()))
            )
        elif case == "altered":
            await c.gateway.store.append(le.release_entry(altered(c.release_for(engines))))
        elif case == "not_logged":
            c.release_for(engines)  # signed, never published
        elif case == "revoked":
            doc = c.release_for(engines)
            await c.publish(doc)
            await c.publish(
                sign_revocation(Revocation(doc.digest, "bad image", NOW), c.release_key)
            )  # type: ignore[arg-type]
        elif case == "expired":
            await c.publish(c.release_for(engines, valid=EXPIRED))
        await c.gateway.releases.refresh(c.gateway.store)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await c.add_worker(engines, release=False)
        why = refused.value.details() or ""
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, why
        expected = {
            "wrong_key": "not trusted",
            "altered": "does not verify (forged or altered)",
            "not_logged": "no release was supplied",
            "revoked": "revoked at log index",
            "expired": "expired at",
        }[case]
        assert expected in why and "00" * 48 in why


@pytest.mark.parametrize("case", ["wrong_key", "altered", "not_logged", "revoked", "expired"])
async def test_client_and_auditor_refuse_workers_under_bad_releases(
    tmp_path: Path, case: str
) -> None:
    async with lenient(tmp_path) as c:
        engines = {"echo": EchoEngine()}
        if case == "wrong_key":
            await log_raw(c, c.release_for(engines, key=Ed25519PrivateKey.generate()))
        elif case == "altered":
            await log_raw(c, altered(c.release_for(engines)))
        elif case == "expired":
            await log_raw(c, c.release_for(engines, valid=EXPIRED))
        elif case == "revoked":
            doc = c.release_for(engines)
            await log_raw(c, doc)
        await job_on(c)  # the job runs while the release (if any) still counts
        if case == "revoked":
            assert (await audit(c)).ok  # before the revocation, the job ran under a release
            assert c.release_key is not None
            await log_raw(c, sign_revocation(Revocation(doc.digest, "bad", NOW), c.release_key))
            await job_on(c)  # a job after the revocation
        client = c.client()
        with pytest.raises(NoTrustedWorker):
            await client.complete("echo", prompt="x")
        rep = await audit(c)
        flagged = [p for p in rep.problems if p.kind == "unreleased_worker"]
        assert len(flagged) == 1 and rep.exit_code == 1, rep.problems
        if case == "revoked":  # only the job after the revocation is flagged
            assert sorted(rep.job_releases.values())[0] == "" and len(rep.job_releases) == 2


# -- revocation reaches admitted workers -----------------------------------------------------------


async def test_revoked_release_evicts_at_the_next_rechallenge(tmp_path: Path) -> None:
    limits = GatewayLimits(checkpoint_every_entries=1, rechallenge_interval_s=0.3)
    async with cluster(tmp_path, limits=limits) as c:
        await c.add_worker({"echo": EchoEngine()})
        await asyncio.sleep(0.5)  # re-challenged under the release: still serving
        assert len(c.gateway.registry.serving("echo")) == 1
        client = c.client()
        assert await client.workers("echo")
        assert c.release_key is not None
        rev = sign_revocation(Revocation(c.published[0].digest, "key leak", NOW), c.release_key)
        await c.publish(rev)
        assert await client.workers("echo") == []  # the client refuses it at once
        assert "revoked at log index" in next(iter(client.rejected.values()))
        for _ in range(40):  # the gateway evicts it at its next re-challenge
            await asyncio.sleep(0.1)
            if not c.gateway.registry.serving("echo"):
                break
        assert c.gateway.registry.serving("echo") == []


# -- split views: the client trusts only the log it verified -------------------------------------


async def test_client_refuses_a_release_proof_that_does_not_match_the_checkpoint(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 5)  # leaf 2: a deposit, no release
        async with grpc.aio.insecure_channel(c.address) as ch:
            stub = lgrpc.TransparencyLogStub(ch)
            honest = ReleaseFollower(c.release_trust(), refresh_s=0)
            assert (await honest.refresh(stub, call)).candidates
            # a gateway showing this client a release its log does not hold (a split view):
            shown = c.release_for({"echo": EchoEngine("other")})

            def split_view(resp: lpb.GetReleasesResponse) -> None:
                entry = le.release_entry(shown)
                resp.entries.append(
                    lpb.ProvenEntry(
                        entry=lpb.LogEntry(
                            index=resp.tree_size - 1, kind=entry.kind, body=entry.body
                        ),
                        hashes=list(resp.entries[0].hashes),
                    )
                )

            def bad_proof(resp: lpb.GetReleasesResponse) -> None:
                resp.entries[0].hashes[0] = bytes(32)

            for tamper in (split_view, bad_proof):
                f = ReleaseFollower(c.release_trust(), refresh_s=0)
                with pytest.raises(ReleaseLogRejected, match="is not in the log"):
                    await f.refresh(stub, tampering(tamper))


async def test_client_refuses_a_checkpoint_inconsistent_with_an_earlier_one(
    tmp_path: Path,
) -> None:
    """Two gateways with one log key but different histories (a forked log): a client that
    verified a checkpoint of one refuses the other's."""
    log_key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    async with (
        cluster(tmp_path / "a", limits=LIMITS, log_key_pem=log_key) as a,
        cluster(tmp_path / "b", limits=LIMITS, log_key_pem=log_key) as b,
    ):
        await a.add_worker({"echo": EchoEngine()})
        await a.deposit("client:alice", 5)
        b.release_key = a.release_key
        await b.gateway.store.append(le.release_entry(a.release_for({"echo": EchoEngine()})))
        for _ in range(3):
            await b.deposit("client:alice", 7)
        follower = ReleaseFollower(a.release_trust(), refresh_s=0)
        async with grpc.aio.insecure_channel(a.address) as ch:
            await follower.refresh(lgrpc.TransparencyLogStub(ch), call)
        async with grpc.aio.insecure_channel(b.address) as ch:
            with pytest.raises(ReleaseLogRejected, match="checkpoint is refused"):
                await follower.refresh(lgrpc.TransparencyLogStub(ch), call)


async def call(method: Any, request: Any, expect: type[Any]) -> Any:
    resp = await method(request)
    assert isinstance(resp, expect)
    return resp


def tampering(change: Any) -> Any:
    async def tampered(method: Any, request: Any, expect: type[Any]) -> Any:
        resp = await call(method, request, expect)
        if isinstance(resp, lpb.GetReleasesResponse):
            change(resp)
        return resp

    return tampered


# -- accepting unreleased software is loud ---------------------------------------------------------


async def test_accept_unreleased_software_is_a_named_skip_and_warns_on_every_use(
    tmp_path: Path,
) -> None:
    async with lenient(tmp_path) as c:
        await c.add_worker({"echo": EchoEngine()}, release=False)
        client = c.client(policy=unreleased_policy(), releases=False)
        reports = []
        for _ in range(2):  # every verification warns, not only the first
            with pytest.warns(UnreleasedSoftwareWarning):
                reports.append((await client.challenge(c.workers[0].worker_id)).report)
        report = reports[-1]
        assert report is not None
        check = report.check("release.inclusion")
        assert check.status is Status.SKIP and check.detail == (UNRELEASED_SKIP,)
        assert "--accept-unreleased-software" in report.render()


# -- the auditor: a release swapped in the log is a log that does not match its checkpoints -------


async def test_auditor_refuses_a_release_swapped_under_a_checkpoint(tmp_path: Path) -> None:
    """A gateway that swaps a logged release for one allowing another image: without re-signing,
    the entries no longer hash to the checkpoint; re-signing a new tree over the edit is a history
    the auditor's last checkpoint does not extend."""
    from tests.integration.test_audit import resign
    from tests.support.ledger import Raw

    async with cluster(tmp_path, limits=LIMITS) as c:
        await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 1_000_000)
        await c.client().complete("echo", prompt="a b")
        state = tmp_path / "audit-state.json"
        async with grpc.aio.insecure_channel(c.address) as ch:
            assert (await auditor(c, ch, state).run()).ok
        swapped = le.release_entry(altered(c.published[0]))
        raw = Raw(tmp_path / "gw.sqlite3")
        raw.q("UPDATE log_entries SET body = ? WHERE idx = 1", (swapped.body,))
        rep = await audit(c)
        assert "log_root_mismatch" in {p.kind for p in rep.problems} and rep.exit_code == 1
        raw.q("UPDATE log_entries SET entry_hash = ? WHERE idx = 1", (swapped.leaf_hash(),))
        raw.close()
        await resign(c)
        async with grpc.aio.insecure_channel(c.address) as ch:
            rep = await auditor(c, ch, state).run()
        assert "history_rewritten" in {p.kind for p in rep.problems} and rep.exit_code == 1


@pytest.mark.parametrize("page", [{"release_entries_page_max": 2}, {"release_page_bytes_max": 1}])
async def test_the_client_follows_releases_across_pages(
    tmp_path: Path, page: dict[str, int]
) -> None:
    async with cluster(tmp_path, limits=GatewayLimits(checkpoint_every_entries=1, **page)) as c:
        docs = [c.release_for({f"m{i}": EchoEngine(f"m{i}")}, version=f"1.{i}.0") for i in range(5)]
        for d in docs:
            await c.publish(d)
        async with grpc.aio.insecure_channel(c.address) as ch:
            stub = lgrpc.TransparencyLogStub(ch)
            first = await stub.GetReleases(lpb.GetReleasesRequest())
            assert first.more and 0 < len(first.entries) < 5
            view = await ReleaseFollower(c.release_trust()).refresh(stub, call)
        assert sorted(x.document.digest for x in view.candidates) == sorted(d.digest for d in docs)
        assert all(not x.excluded for x in view.candidates)
