"""The auditor catches a gateway that drops an entry, rewrites history, inflates a reward, credits a
job twice or forges a receipt — each case by name — and passes an honest one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.client.audit import Auditor, LogIdentity, Report
from ccgw.gateway.config import GatewayLimits
from ccgw.verify import merkle
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from tests.support.cluster import Cluster, cluster
from tests.support.fake_engine import EchoEngine

JOBS = 4


async def run_jobs(c: Cluster) -> None:
    await c.add_worker({"echo": EchoEngine()})
    await c.deposit("client:alice", 1_000_000)
    client = c.client()
    for i in range(JOBS):
        await client.complete("echo", prompt=f"job number {i}")


def auditor(c: Cluster, channel: grpc.aio.Channel, state: Path | None = None) -> Auditor:
    log_id = LogIdentity("ccgw-log", c.gateway.checkpointer.public_raw, "ccgw.local/log")
    roots = RootStore.default().with_simulated(c.vendor.root_pem())
    return Auditor(channel, log_id, Policy().allowing_simulated(), roots, state_path=state)


async def resign(c: Cluster, db: Path) -> None:
    """The lying gateway recomputes leaf hashes and signs a fresh checkpoint over its edit."""
    con = sqlite3.connect(db)
    for job, jws, ev in con.execute("SELECT job_id, jws, evidence_sha256 FROM receipts").fetchall():
        con.execute(
            "UPDATE receipts SET leaf_hash = ? WHERE job_id = ?",
            (merkle.leaf_hash(merkle.receipt_leaf(jws, ev)), job),
        )
    con.execute("DELETE FROM checkpoints")
    con.commit()
    con.close()
    await c.gateway.checkpointer.maybe_sign(force=True)


def kinds(rep: Report) -> set[str]:
    return {p.kind for p in rep.problems}


LIMITS = GatewayLimits(checkpoint_every_entries=1)


async def test_honest_gateway_passes_and_client_checks_inclusion(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await run_jobs(c)
        async with grpc.aio.insecure_channel(c.address) as ch:
            state = tmp_path / "audit-state.json"
            rep = await auditor(c, ch, state).run()
            assert rep.ok, rep.problems
            assert rep.tree_size == JOBS and rep.receipts_verified == JOBS
            provider = rep.balances["provider:p1"]
            assert provider == (await c.gateway.store.balance("provider:p1"))[0] > 0
            assert state.exists()
            # a second audit after more jobs checks consistency with the saved checkpoint
            await c.client().complete("echo", prompt="one more")
            rep2 = await auditor(c, ch, state).run()
            assert rep2.ok and rep2.tree_size == JOBS + 1
        answer = await c.client().complete("echo", prompt="include me")
        cp = await c.client().inclusion(
            answer, LogIdentity("ccgw-log", c.gateway.checkpointer.public_raw, "ccgw.local/log")
        )
        assert cp.size >= answer.log_index + 1


async def test_dropped_entry_is_caught(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await run_jobs(c)
        con = sqlite3.connect(tmp_path / "gw.sqlite3")
        con.execute("DELETE FROM receipts WHERE log_index = 1")
        con.commit()
        con.close()
        async with grpc.aio.insecure_channel(c.address) as ch:
            rep = await auditor(c, ch).run()
        assert "log_root_mismatch" in kinds(rep)
        assert "reward_without_receipt" in kinds(rep)


async def test_rewritten_history_is_caught(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await run_jobs(c)
        state = tmp_path / "audit-state.json"
        async with grpc.aio.insecure_channel(c.address) as ch:
            assert (await auditor(c, ch, state).run()).ok
            db = tmp_path / "gw.sqlite3"
            con = sqlite3.connect(db)
            a, b = con.execute("SELECT jws FROM receipts ORDER BY log_index LIMIT 2").fetchall()
            con.execute("UPDATE receipts SET jws = ? WHERE log_index = 0", (b[0],))
            con.execute("UPDATE receipts SET jws = ? WHERE log_index = 1", (a[0],))
            con.commit()
            con.close()
            await resign(c, db)
            await c.client().complete("echo", prompt="grow the log")
            rep = await auditor(c, ch, state).run()
        assert "history_rewritten" in kinds(rep)
        bad = next(p for p in rep.problems if p.kind == "history_rewritten")
        assert "previous_checkpoint" in bad.evidence and "new_checkpoint" in bad.evidence


async def test_inflated_reward_is_caught(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await run_jobs(c)
        con = sqlite3.connect(tmp_path / "gw.sqlite3")
        tid = con.execute("SELECT id FROM transfers WHERE kind = 'reward' LIMIT 1").fetchone()[0]
        con.execute(
            "UPDATE entries SET amount_micro = amount_micro + 500 WHERE transfer_id = ? AND account = 'provider:p1'",
            (tid,),
        )
        con.execute(
            "UPDATE entries SET amount_micro = amount_micro - 500 WHERE transfer_id = ? AND account = 'client:alice'",
            (tid,),
        )
        con.commit()
        con.close()
        async with grpc.aio.insecure_channel(c.address) as ch:
            rep = await auditor(c, ch).run()
        assert kinds(rep) == {"reward_mismatch"}


async def test_job_credited_twice_is_caught(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await run_jobs(c)
        con = sqlite3.connect(tmp_path / "gw.sqlite3")
        tid, job = con.execute(
            "SELECT id, job_id FROM transfers WHERE kind = 'reward' LIMIT 1"
        ).fetchone()
        con.execute("INSERT INTO transfers VALUES (?, 'reward', ?, 0)", (tid + ":again", job))
        for acct, amt in con.execute(
            "SELECT account, amount_micro FROM entries WHERE transfer_id = ?", (tid,)
        ).fetchall():
            con.execute(
                "INSERT INTO entries (transfer_id, account, amount_micro) VALUES (?, ?, ?)",
                (tid + ":again", acct, amt),
            )
        con.commit()
        con.close()
        async with grpc.aio.insecure_channel(c.address) as ch:
            rep = await auditor(c, ch).run()
        assert kinds(rep) == {"job_credited_twice"}


async def test_forged_receipt_is_caught(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await run_jobs(c)
        db = tmp_path / "gw.sqlite3"
        con = sqlite3.connect(db)
        (jws,) = con.execute("SELECT jws FROM receipts WHERE log_index = 2").fetchone()
        header = jwt.get_unverified_header(jws)
        payload = jwt.api_jws.decode(jws, options={"verify_signature": False})
        forged = jwt.api_jws.encode(
            payload, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=header
        )
        con.execute("UPDATE receipts SET jws = ? WHERE log_index = 2", (forged,))
        con.commit()
        con.close()
        await resign(c, db)
        async with grpc.aio.insecure_channel(c.address) as ch:
            rep = await auditor(c, ch).run()
        assert "forged_receipt" in kinds(rep)
        assert "reward_without_receipt" in kinds(rep)


async def test_wrong_log_key_is_refused(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await run_jobs(c)
        async with grpc.aio.insecure_channel(c.address) as ch:
            other = LogIdentity(
                "ccgw-log",
                Ed25519PrivateKey.generate().public_key().public_bytes_raw(),
                "ccgw.local/log",
            )
            a = Auditor(
                ch,
                other,
                Policy().allowing_simulated(),
                RootStore.default().with_simulated(c.vendor.root_pem()),
            )
            rep = await a.run()
        assert kinds(rep) == {"checkpoint_signature"}
        with pytest.raises(AssertionError):
            assert rep.ok


async def test_settlement_statement_is_signed_and_recomputable(tmp_path: Path) -> None:
    from ccgw.gateway.settlement import export
    from ccgw.verify import settlement

    async with cluster(tmp_path, limits=LIMITS) as c:
        await run_jobs(c)
        cfg = c.gateway.router._config
        size = (await c.gateway.store.latest_checkpoint())[0]  # type: ignore[index]
        jws = await export(c.gateway.store, cfg, c.gateway.checkpointer._key, 0, size)
        stmt = settlement.verify(jws, c.gateway.checkpointer.public_raw)
        paid = (await c.gateway.store.balance("provider:p1"))[0]
        assert stmt["providers"]["provider:p1"]["reward_micro"] == paid
        assert stmt["providers"]["provider:p1"]["jobs"] == JOBS
        assert stmt["network_fee_micro"] == (await c.gateway.store.balance("network:fee"))[0]
        with pytest.raises(Exception, match="does not verify"):
            settlement.verify(jws, Ed25519PrivateKey.generate().public_key().public_bytes_raw())


async def test_log_rpcs_bound_and_refuse_bad_requests(tmp_path: Path) -> None:
    from ccgw.protos.ccgw.v1 import log_pb2 as lpb
    from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc

    async with cluster(tmp_path, limits=LIMITS) as c:
        await run_jobs(c)
        async with grpc.aio.insecure_channel(c.address) as ch:
            stub = lgrpc.TransparencyLogStub(ch)
            cases = [
                (
                    stub.GetEntries,
                    lpb.GetEntriesRequest(start=0, end=10_000),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (
                    stub.GetEntries,
                    lpb.GetEntriesRequest(start=3, end=3),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (
                    stub.GetConsistencyProof,
                    lpb.GetConsistencyProofRequest(first=3, second=2),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (
                    stub.GetConsistencyProof,
                    lpb.GetConsistencyProofRequest(first=1, second=999),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
                (
                    stub.GetEvidence,
                    lpb.GetEvidenceRequest(evidence_sha256="00" * 32),
                    grpc.StatusCode.NOT_FOUND,
                ),
                (
                    stub.GetInclusionProof,
                    lpb.GetInclusionProofRequest(job_id=b"\x01" * 16),
                    grpc.StatusCode.NOT_FOUND,
                ),
                (
                    stub.GetInclusionProof,
                    lpb.GetInclusionProofRequest(job_id=b"", tree_size=7),
                    grpc.StatusCode.NOT_FOUND,
                ),
            ]
            for method, request, code in cases:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await method(request)
                assert err.value.code() == code, (request, err.value.details())
            page = await stub.GetLedger(lpb.GetLedgerRequest(after_seq=0, limit=10_000))
            assert 0 < len(page.entries) <= LIMITS.log_entries_page_max
