"""The auditor against a real gateway: an honest one (per-model prices included) passes; each fraud
a hostile operator tries on its own database — SQLite and PostgreSQL — is caught by name."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.client.audit import Auditor, LogIdentity, Report
from ccgw.gateway.config import GatewayLimits
from ccgw.verify import log_entries as le
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.prices import Price, PriceSchedule
from tests.support import pg
from tests.support.cluster import Cluster, cluster
from tests.support.fake_engine import EchoEngine
from tests.support.ledger import Raw

JOBS = 4
LIMITS = GatewayLimits(checkpoint_every_entries=1)
# "echo" costs more than the default: honest per-model prices must pass the audit.
PRICES = PriceSchedule(
    Price(1_000, 2_000), (("echo", Price(7_000, 11_000)),), 700, "network:fee", 0
)


async def run_jobs(c: Cluster) -> None:
    await c.add_worker({"echo": EchoEngine()})
    await c.deposit("client:alice", 1_000_000)
    client = c.client()
    for i in range(JOBS):
        await client.complete("echo", prompt=f"job number {i}")


def log_id(c: Cluster) -> LogIdentity:
    return LogIdentity("ccgw-log", c.gateway.checkpointer.public_raw, "ccgw.local/log")


def auditor(c: Cluster, channel: grpc.aio.Channel, state: Path | None = None) -> Auditor:
    roots = RootStore.default().with_simulated(c.vendor.root_pem())
    return Auditor(
        channel,
        log_id(c),
        Policy().allowing_simulated(),
        roots,
        state_path=state,
        release_keys=c.release_trust().keys,
    )


async def audit(c: Cluster, state: Path | None = None) -> Report:
    async with grpc.aio.insecure_channel(c.address) as ch:
        return await auditor(c, ch, state).run()


def kinds(rep: Report) -> set[str]:
    return {p.kind for p in rep.problems}


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, db: str) -> AsyncIterator[tuple[Cluster, Raw]]:
    """A gateway that has run JOBS jobs, on SQLite or PostgreSQL, and raw access to its tables."""
    schema = pg.fresh_schema() if db == "postgres" else None
    cfg = {"db_dsn": pg.DSN, "db_schema": schema} if schema else {}
    try:
        async with cluster(tmp_path, limits=LIMITS, initial_prices=PRICES, **cfg) as c:
            await run_jobs(c)
            raw = Raw(tmp_path / "gw.sqlite3", schema)
            try:
                yield c, raw
            finally:
                raw.close()
    finally:
        if schema:
            pg.drop_schema(schema)


STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def reward_of(raw: Raw, n: int = 0) -> list[tuple[int, int, str, str, str, str, int]]:
    """The postings of the n-th reward: (seq, log_index, transfer, kind, job, account, amount)."""
    rewards = raw.q(
        "SELECT DISTINCT transfer_id FROM postings WHERE kind = 'reward' ORDER BY transfer_id"
    )
    return [
        tuple(r)  # type: ignore[misc]
        for r in raw.q(
            "SELECT * FROM postings WHERE transfer_id = ? ORDER BY seq", (rewards[n][0],)
        )
    ]


def move(raw: Raw, account: str, delta: int) -> None:
    """Keep the running balances in step with the edited postings (a careful fraud)."""
    raw.q(
        "UPDATE accounts SET balance_micro = balance_micro + ? WHERE account = ?", (delta, account)
    )


async def test_honest_gateway_with_per_model_prices_passes(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS, initial_prices=PRICES) as c:
        await run_jobs(c)
        state = tmp_path / "audit-state.json"
        rep = await audit(c, state)
        assert rep.ok, rep.problems
        assert rep.receipts_verified == JOBS and rep.tree_size == JOBS + 3 and rep.exit_code == 0
        # every job is reported under the release its worker was admitted under
        release = c.published[0]
        assert set(rep.job_releases.values()) == {
            f"release test-1 ({release.digest[:16]}, log index 1), sev-snp 1 vCPU simulated"
        }
        provider = rep.balances["provider:p1"]
        assert provider == (await c.gateway.store.balance("provider:p1"))[0] > 0
        assert sum(rep.balances.values()) == 0 and rep.balances["client:alice"] < 1_000_000
        assert state.exists()
        # a second audit after more jobs checks consistency with the saved checkpoint
        answer = await c.client().complete("echo", prompt="one more")
        rep2 = await audit(c, state)
        assert rep2.ok and rep2.tree_size == JOBS + 4
        cp = await c.client().inclusion(answer, log_id(c))
        assert cp.size >= answer.log_index + 1


@pytest.mark.parametrize("db", STORES)
async def test_deleted_reward_is_caught(tmp_path: Path, db: str) -> None:
    """Fraud 1: a logged job's reward transfer is deleted (provider unpaid, client refunded)."""
    async with gateway(tmp_path, db) as (c, raw):
        for seq, _, _, _, _, account, amount in reward_of(raw):
            raw.q("DELETE FROM postings WHERE seq = ?", (seq,))
            move(raw, account, -amount)
        rep = await audit(c)
        assert kinds(rep) == {"reward_missing", "balance_mismatch"} and rep.exit_code == 1


@pytest.mark.parametrize("db", STORES)
async def test_reward_replaced_by_a_withdrawal_is_caught(tmp_path: Path, db: str) -> None:
    """Fraud 2: the reward becomes a "withdrawal" from the client (the gateway keeps it)."""
    async with gateway(tmp_path, db) as (c, raw):
        rows = reward_of(raw)
        for seq, _, tid, _, _, account, amount in rows:
            new = "external" if amount > 0 else account
            raw.q(
                "UPDATE postings SET kind = 'withdrawal', job_id = '', account = ?, "
                "transfer_id = ? WHERE seq = ?",
                (new, "withdrawal:" + tid, seq),
            )
            if new != account:
                move(raw, account, -amount)
                move(raw, new, amount)
        rep = await audit(c)
        assert {"reward_missing", "transfer_without_entry", "balance_mismatch"} <= kinds(rep)


@pytest.mark.parametrize("db", STORES)
async def test_client_money_moved_to_the_fee_account_as_a_deposit_is_caught(
    tmp_path: Path, db: str
) -> None:
    """Fraud 3: a client's money moved to network:fee under the kind `deposit`."""
    async with gateway(tmp_path, db) as (c, raw):
        seq, index = raw.q(
            "SELECT seq, log_index FROM postings WHERE kind = 'deposit' ORDER BY seq DESC"
        )[0]
        for leg, (account, amount) in enumerate((("client:alice", -500), ("network:fee", 500))):
            raw.q(
                "INSERT INTO postings VALUES (?, ?, 'deposit:fees', 'deposit', '', ?, ?)",
                (seq + 1 + leg, index, account, amount),
            )
            move(raw, account, amount)
        rep = await audit(c)
        assert kinds(rep) == {"transfer_without_entry", "balance_mismatch"}


@pytest.mark.parametrize("db", STORES)
async def test_transfer_of_an_unknown_kind_is_caught(tmp_path: Path, db: str) -> None:
    """Fraud 4: a client -> provider transfer of a kind the rules do not know."""
    async with gateway(tmp_path, db) as (c, raw):
        seq, index = reward_of(raw)[-1][:2]
        for leg, (account, amount) in enumerate((("client:alice", -700), ("provider:p1", 700))):
            raw.q(
                "INSERT INTO postings VALUES (?, ?, 'bonus:1', 'bonus', '', ?, ?)",
                (seq + 1 + leg, index, account, amount),
            )
            move(raw, account, amount)
        rep = await audit(c)
        assert "unknown_transfer_kind" in kinds(rep) and "balance_mismatch" in kinds(rep)


@pytest.mark.parametrize("db", STORES)
async def test_withdrawal_the_holder_never_signed_is_caught(tmp_path: Path, db: str) -> None:
    """The gateway appends a withdrawal past the checkpoint with a key it made up."""
    async with gateway(tmp_path, db) as (c, raw):
        size = raw.q("SELECT size FROM log_head")[0][0]
        entry = le.withdrawal(Ed25519PrivateKey.generate(), "client:alice", 1_000, "drain")
        raw.q(
            "INSERT INTO log_entries VALUES (?, ?, ?, ?)",
            (size, entry.kind, entry.body, entry.leaf_hash()),
        )
        rep = await audit(c)
        assert kinds(rep) == {"withdrawal_unauthorized"}


@pytest.mark.parametrize("db", STORES)
async def test_inflated_reward_is_caught(tmp_path: Path, db: str) -> None:
    async with gateway(tmp_path, db) as (c, raw):
        for seq, _, _, _, _, account, _ in reward_of(raw):
            delta = 500 if account == "provider:p1" else -500 if account == "client:alice" else 0
            raw.q("UPDATE postings SET amount_micro = amount_micro + ? WHERE seq = ?", (delta, seq))
        rep = await audit(c)
        assert kinds(rep) == {"reward_mismatch"}


async def test_job_credited_twice_is_caught(tmp_path: Path) -> None:
    async with gateway(tmp_path, "sqlite") as (c, raw):
        later = reward_of(raw, 1)[0][1]
        for seq, _, tid, kind, job, account, amount in reward_of(raw, 0):
            raw.q(
                "INSERT INTO postings VALUES (?, ?, ?, ?, ?, ?, ?)",
                (later * 8 + 5 + (seq - 1) % 8, later, tid, kind, job, account, amount),
            )
        rep = await audit(c)
        assert kinds(rep) == {"job_credited_twice"}


async def test_dropped_entry_is_caught(tmp_path: Path) -> None:
    async with gateway(tmp_path, "sqlite") as (c, raw):
        raw.q("DELETE FROM log_entries WHERE idx = 3")
        rep = await audit(c)
        assert "log_root_mismatch" in kinds(rep)
        assert "reward_without_receipt" in kinds(rep)


async def resign(c: Cluster) -> None:
    """The lying gateway recomputes its tree and view over its edit and signs a fresh checkpoint."""
    await c.gateway.store.rebuild_view()
    raw = Raw(Path(c.gateway.router._config.db_path))
    raw.q("DELETE FROM checkpoints")
    raw.close()
    c.gateway.checkpointer._signed = -1
    await c.gateway.checkpointer.maybe_sign(force=True)


async def test_rewritten_history_is_caught(tmp_path: Path) -> None:
    async with gateway(tmp_path, "sqlite") as (c, raw):
        state = tmp_path / "audit-state.json"
        assert (await audit(c, state)).ok
        a, b = raw.q(
            "SELECT idx, body FROM log_entries WHERE kind = 'receipt' ORDER BY idx LIMIT 2"
        )
        raw.q("UPDATE log_entries SET body = ?, entry_hash = ? WHERE idx = ?", (b[1], b"x", a[0]))
        raw.q("UPDATE log_entries SET body = ?, entry_hash = ? WHERE idx = ?", (a[1], b"y", b[0]))
        await resign(c)
        await c.client().complete("echo", prompt="grow the log")
        rep = await audit(c, state)
        assert "history_rewritten" in kinds(rep)
        bad = next(p for p in rep.problems if p.kind == "history_rewritten")
        assert "previous_checkpoint" in bad.evidence and "new_checkpoint" in bad.evidence


async def test_forged_receipt_is_caught(tmp_path: Path) -> None:
    async with gateway(tmp_path, "sqlite") as (c, raw):
        idx, body = raw.q("SELECT idx, body FROM log_entries WHERE kind = 'receipt' LIMIT 1")[0]
        obj = le.load(body, le.ReceiptBody.KEYS)
        header = jwt.get_unverified_header(obj["receipt_jws"])
        payload = jwt.api_jws.decode(obj["receipt_jws"], options={"verify_signature": False})
        obj["receipt_jws"] = jwt.api_jws.encode(
            payload, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=header
        )
        raw.q("UPDATE log_entries SET body = ? WHERE idx = ?", (le.canonical(obj), idx))
        await resign(c)
        rep = await audit(c)
        assert kinds(rep) == {"forged_receipt", "reward_without_receipt", "balance_mismatch"}


async def test_wrong_log_key_is_refused(tmp_path: Path) -> None:
    async with cluster(tmp_path, limits=LIMITS) as c:
        await run_jobs(c)
        async with grpc.aio.insecure_channel(c.address) as ch:
            other = LogIdentity(
                "ccgw-log",
                Ed25519PrivateKey.generate().public_key().public_bytes_raw(),
                "ccgw.local/log",
            )
            roots = RootStore.default().with_simulated(c.vendor.root_pem())
            rep = await Auditor(
                ch, other, Policy().allowing_simulated(), roots, release_keys=c.release_trust().keys
            ).run()
        assert kinds(rep) == {"checkpoint_signature"} and rep.exit_code == 1


async def test_settlement_statement_uses_the_logged_prices(tmp_path: Path) -> None:
    from ccgw.gateway.settlement import export
    from ccgw.verify import settlement

    async with cluster(tmp_path, limits=LIMITS, initial_prices=PRICES) as c:
        await run_jobs(c)
        size = (await c.gateway.store.latest_checkpoint())[0]  # type: ignore[index]
        key = c.gateway.checkpointer.key
        jws = await export(c.gateway.store, key, "ccgw.local/log", 0, size)
        stmt = settlement.verify(jws, c.gateway.checkpointer.public_raw)
        paid = (await c.gateway.store.balance("provider:p1"))[0]
        assert stmt["providers"]["provider:p1"]["reward_micro"] == paid
        assert stmt["providers"]["provider:p1"]["jobs"] == JOBS
        assert stmt["network_fee_micro"] == (await c.gateway.store.balance("network:fee"))[0]
        assert stmt["prices"][0]["models"]["echo"]["output_per_1k_micro"] == 11_000
        with pytest.raises(Exception, match="does not verify"):
            settlement.verify(jws, Ed25519PrivateKey.generate().public_key().public_bytes_raw())


async def test_log_rpcs_validate_every_field_at_the_edge(tmp_path: Path) -> None:
    from ccgw.protos.ccgw.v1 import log_pb2 as lpb
    from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc

    big = 2**63
    async with cluster(tmp_path, limits=LIMITS) as c:
        await run_jobs(c)
        async with grpc.aio.insecure_channel(c.address) as ch:
            stub = lgrpc.TransparencyLogStub(ch)
            bad = grpc.StatusCode.INVALID_ARGUMENT
            cases = [
                (stub.GetEntries, lpb.GetEntriesRequest(start=0, end=10_000), bad),
                (stub.GetEntries, lpb.GetEntriesRequest(start=3, end=3), bad),
                (stub.GetEntries, lpb.GetEntriesRequest(start=big, end=big + 1), bad),
                (stub.GetEntries, lpb.GetEntriesRequest(start=0, end=2**64 - 1), bad),
                (stub.GetConsistencyProof, lpb.GetConsistencyProofRequest(first=3, second=2), bad),
                (
                    stub.GetConsistencyProof,
                    lpb.GetConsistencyProofRequest(first=1, second=999),
                    bad,
                ),
                (
                    stub.GetConsistencyProof,
                    lpb.GetConsistencyProofRequest(first=big, second=big),
                    bad,
                ),
                (
                    stub.GetEvidence,
                    lpb.GetEvidenceRequest(evidence_sha256="00" * 32),
                    grpc.StatusCode.NOT_FOUND,
                ),
                (stub.GetEvidence, lpb.GetEvidenceRequest(evidence_sha256="../" * 40), bad),
                (
                    stub.GetInclusionProof,
                    lpb.GetInclusionProofRequest(job_id=b"\x01" * 16),
                    grpc.StatusCode.NOT_FOUND,
                ),
                (
                    stub.GetInclusionProof,
                    lpb.GetInclusionProofRequest(job_id=b"", tree_size=7),
                    bad,
                ),
                (
                    stub.GetInclusionProof,
                    lpb.GetInclusionProofRequest(job_id=b"\x01" * 16, tree_size=big),
                    bad,
                ),
                (stub.GetEntryProof, lpb.GetEntryProofRequest(index=big), bad),
                (stub.GetEntryProof, lpb.GetEntryProofRequest(index=1, tree_size=5_000), bad),
                (
                    stub.GetEntryProof,
                    lpb.GetEntryProofRequest(index=9_999),
                    grpc.StatusCode.NOT_FOUND,
                ),
                (stub.GetLedger, lpb.GetLedgerRequest(after_seq=big), bad),
                (stub.GetAccounts, lpb.GetAccountsRequest(after="bad name"), bad),
                (stub.GetAccountKeys, lpb.GetAccountKeysRequest(account="x" * 500), bad),
            ]
            for method, request, code in cases:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await method(request)
                assert err.value.code() == code, (request, err.value.details())
            page = await stub.GetLedger(lpb.GetLedgerRequest(after_seq=0, limit=10_000))
            assert 0 < len(page.entries) <= LIMITS.log_entries_page_max
            accounts = await stub.GetAccounts(lpb.GetAccountsRequest())
            assert accounts.log_size == JOBS + 3 and len(accounts.accounts) == 3  # no fee yet
            proof = await stub.GetEntryProof(lpb.GetEntryProofRequest(index=1))
            assert proof.entry.kind == "release" and proof.leaf_index == 1
            proof = await stub.GetEntryProof(lpb.GetEntryProofRequest(index=2))
            assert proof.entry.kind == "deposit" and proof.leaf_index == 2
