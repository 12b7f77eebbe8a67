"""Crash safety: SIGKILL a gateway process in the middle of heavy recording, restart it on the same
database; no reward is lost (every receipt a client received is in the log), none is doubled, no
hold is left dangling, and the auditor verifies the whole log and ledger."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ccgw.client.audit import Auditor, LogIdentity
from ccgw.client.errors import ClientError
from ccgw.client.sdk import Client, ClientLimits
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from tests.support.processes import (
    ccgw,
    free_port,
    operator_files,
    release_trust,
    start_gateway,
    start_worker,
    stop,
)


async def hammer(client: Client, seconds: float, answered: set[str]) -> int:
    """Concurrent jobs for `seconds`; collects the job ids whose verified receipts arrived."""
    failures = 0
    stop = time.monotonic() + seconds

    async def loop(i: int) -> None:
        nonlocal failures
        while time.monotonic() < stop:
            try:
                a = await client.complete("tiny", prompt=f"load {i}", max_new_tokens=4)
                assert a.receipt is not None
                answered.add(a.receipt.job_id)
            except (ClientError, grpc.aio.AioRpcError):
                failures += 1
                await asyncio.sleep(0.2)

    await asyncio.gather(*(loop(i) for i in range(6)))
    return failures


@pytest.mark.slow
async def test_sigkill_during_recording_loses_and_doubles_nothing(tmp_path: Path) -> None:
    t = tmp_path
    token = operator_files(t)
    assert (
        ccgw("init-db", "--db", str(t / "gw.db"), "--log-key", str(t / "log.key")).returncode == 0
    )
    assert (
        ccgw(
            "deposit",
            "--db",
            str(t / "gw.db"),
            "--account",
            "client:app",
            "--amount-micro",
            "100000000",
            "--reference",
            "dep-1",
            "--log-key",
            str(t / "log.key"),
        ).returncode
        == 0
    )
    addr = f"127.0.0.1:{free_port()}"
    gw = start_gateway(t, addr)
    worker = start_worker(t, addr)
    roots = RootStore.default().with_simulated((t / "sim" / "root.pem").read_bytes())
    policy = Policy().allowing_simulated()
    answered: set[str] = set()
    try:
        client = Client.connect(
            addr,
            token,
            policy,
            roots,
            limits=ClientLimits(rpc_deadline_s=5, job_deadline_s=10),
            releases=release_trust(t),
        )
        for _ in range(100):  # wait for the worker to be admitted
            with contextlib.suppress(ClientError):
                if await client.workers("tiny"):
                    break
            await asyncio.sleep(0.2)
        await hammer(client, 3.0, answered)
        before_kill = set(answered)
        assert len(before_kill) >= 5
        kill_at = asyncio.create_task(hammer(client, 1.5, answered))
        await asyncio.sleep(0.7)
        gw.send_signal(signal.SIGKILL)  # in the middle of recording
        gw.wait()
        await kill_at
        gw = start_gateway(t, addr)
        for _ in range(150):  # the worker reconnects by itself
            with contextlib.suppress(ClientError):
                if await client.workers("tiny"):
                    break
            await asyncio.sleep(0.2)
        await hammer(client, 2.0, answered)
        assert len(answered) > len(before_kill)
        pub = load_pem_public_key((t / "log.pub").read_bytes())
        assert isinstance(pub, Ed25519PublicKey)
        async with grpc.aio.insecure_channel(addr) as ch:
            rep = await Auditor(
                ch,
                LogIdentity("ccgw-log", pub.public_bytes_raw(), "ccgw.local/log"),
                policy,
                roots,
                release_keys=release_trust(t).keys,
            ).run()
        assert rep.ok, rep.problems
        import sqlite3

        con = sqlite3.connect(t / "gw.db")
        logged = {str(r[0]) for r in con.execute("SELECT key FROM uniques WHERE namespace = 'job'")}
        pending = con.execute("SELECT COUNT(*) FROM holds WHERE state = 'pending'").fetchone()[0]
        con.close()
        assert answered <= logged  # no reward lost: every receipt a client holds is in the log
        assert rep.receipts_verified == len(logged)  # none doubled (the auditor checks)
        assert pending == 0
        inside = sum(v for k, v in rep.balances.items() if k != "external")
        assert inside == 100_000_000  # money only moved between accounts: none created or lost
        assert rep.balances["provider:acme"] > 0
    finally:
        stop(worker, gw)
