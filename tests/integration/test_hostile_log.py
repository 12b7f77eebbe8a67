"""The auditor against a hostile log server: pages that never advance, garbage, huge pages, an
endless tail, checkpoints that do not parse or verify, a server that hangs or is gone. Each ends in
a named problem after bounded work, never a traceback or a hang; `ccgw audit` exit codes tell an
operator which case it is (0 clean, 1 discrepancy, 2 usage, 3 unreachable or misbehaving)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.client.audit import AuditLimits, Auditor, LogIdentity, Report
from ccgw.gateway.checkpointer import Checkpointer
from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.log_service import LogServicer
from ccgw.gateway.store.sqlstore import SqlStore
from ccgw.keys import public_pem
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc
from ccgw.verify import checkpoint
from tests.support.ledger import OPERATOR, OPERATOR_PUB, open_test_store, run_history, worker

HISTORY = [
    ("deposit", "client:b", 4_000),
    ("job", "client:a", "provider:x", 100, 300, "posted"),
    ("job", "client:b", "provider:y", 200, 100, "retried"),
    ("withdraw", "provider:x", 100),
    ("prices", 3_000, 4_000, 900),
    ("job", "client:a", "provider:y", 10, 10, "voided"),
    ("job", "client:a", "provider:x", 50, 60, "posted"),
]
LOG_ID = LogIdentity("ccgw-log", OPERATOR_PUB, "ccgw.local/log")


class Hostile(LogServicer):
    """The honest servicer over a real store, bent by `mode`; counts the calls it answers."""

    def __init__(self, store: SqlStore, mode: str) -> None:
        config = GatewayConfig()
        super().__init__(config, store, Checkpointer(config, store, OPERATOR))
        self.mode, self.calls = mode, Counter[str]()

    async def GetCheckpoint(self, request: Any, context: Any) -> lpb.GetCheckpointResponse:
        self.calls["GetCheckpoint"] += 1
        if self.mode == "hang":
            await asyncio.sleep(30)
        resp = await super().GetCheckpoint(request, context)
        if self.mode == "unparsable_checkpoint":
            return lpb.GetCheckpointResponse(checkpoint="ccgw.local/log\nlots\n!!\n\n— x y\n")
        if self.mode == "other_key_checkpoint":
            cp = checkpoint.verify(resp.checkpoint, LOG_ID.name, LOG_ID.public_raw)
            return lpb.GetCheckpointResponse(
                checkpoint=checkpoint.sign(cp, Ed25519PrivateKey.generate(), LOG_ID.name)
            )
        return resp

    async def GetLedger(self, request: Any, context: Any) -> lpb.GetLedgerResponse:
        self.calls["GetLedger"] += 1
        if self.mode == "stalled_ledger":
            request = lpb.GetLedgerRequest(after_seq=0, limit=request.limit)
        resp = await super().GetLedger(request, context)
        if self.mode == "huge_ledger_page" and resp.entries:
            return lpb.GetLedgerResponse(entries=[resp.entries[0]] * 5_000)
        return resp

    async def GetEntries(self, request: Any, context: Any) -> lpb.GetEntriesResponse:
        self.calls["GetEntries"] += 1
        resp = await super().GetEntries(request, context)
        if self.mode == "garbage_entries":
            for e in resp.entries:
                e.body = b"\xff{not json" + e.body[:7]
        if self.mode == "endless_tail" and not resp.entries:
            return lpb.GetEntriesResponse(
                entries=[
                    lpb.LogEntry(index=i, kind="bogus", body=b"{}")
                    for i in range(request.start, request.end)
                ]
            )
        if self.mode == "oversized_message":
            return lpb.GetEntriesResponse(
                entries=[lpb.LogEntry(index=request.start, kind="deposit", body=b"x" * (5 << 20))]
            )
        return resp

    async def GetAccounts(self, request: Any, context: Any) -> lpb.GetAccountsResponse:
        self.calls["GetAccounts"] += 1
        if self.mode == "stalled_accounts":
            request = lpb.GetAccountsRequest(limit=request.limit)
            resp = await super().GetAccounts(request, context)
            return lpb.GetAccountsResponse(log_size=resp.log_size, accounts=[resp.accounts[0]] * 2)
        return await super().GetAccounts(request, context)


def _garbage(request: bytes, context: Any) -> bytes:
    return b"\xff\xff\xff\xff garbage"


GARBAGE = grpc.method_handlers_generic_handler(
    "ccgw.v1.TransparencyLog",
    {
        name: grpc.unary_unary_rpc_method_handler(_garbage)
        for name in ("GetCheckpoint", "GetEntries", "GetLedger", "GetAccounts")
    },
)


@contextlib.asynccontextmanager
async def hostile(tmp_path: Path, mode: str) -> AsyncIterator[tuple[str, Hostile]]:
    store, _ = open_test_store("sqlite", tmp_path)
    await run_history(store, HISTORY)
    servicer = Hostile(store, mode)
    server = grpc.aio.server()
    if mode == "garbage_bytes":  # answers that are not protobuf messages at all
        server.add_generic_rpc_handlers((GARBAGE,))
    else:
        lgrpc.add_TransparencyLogServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)
        await store.close()


async def audit(addr: str, limits: AuditLimits | None = None) -> Report:
    policy, roots = worker().auditor_trust()
    async with grpc.aio.insecure_channel(addr) as ch:
        return await Auditor(ch, LOG_ID, policy, roots, limits=limits).run()


def kinds(rep: Report) -> set[str]:
    return {p.kind for p in rep.problems}


async def test_honest_server_audits_clean(tmp_path: Path) -> None:
    async with hostile(tmp_path, "honest") as (addr, _):
        rep = await audit(addr)
    assert rep.ok and rep.exit_code == 0, rep.problems
    assert rep.receipts_verified == 3 and rep.entries == 9


@pytest.mark.parametrize(
    ("mode", "named", "code"),
    [
        ("stalled_ledger", {"gateway_misbehaving"}, 3),
        ("huge_ledger_page", {"gateway_misbehaving"}, 3),
        ("stalled_accounts", {"gateway_misbehaving"}, 3),
        ("unparsable_checkpoint", {"gateway_misbehaving"}, 3),
        ("garbage_bytes", {"gateway_misbehaving"}, 3),
        ("oversized_message", {"gateway_misbehaving"}, 3),
        ("other_key_checkpoint", {"checkpoint_signature"}, 1),
    ],
)
async def test_misbehaving_server_is_named_after_bounded_work(
    tmp_path: Path, mode: str, named: set[str], code: int
) -> None:
    async with hostile(tmp_path, mode) as (addr, servicer):
        rep = await asyncio.wait_for(audit(addr), 30)
    assert kinds(rep) == named and rep.exit_code == code, rep.problems
    assert sum(servicer.calls.values()) < 50  # it stops at the first page that misbehaves


async def test_garbage_entries_are_named_problems(tmp_path: Path) -> None:
    async with hostile(tmp_path, "garbage_entries") as (addr, _):
        rep = await audit(addr)
    assert kinds(rep) >= {"malformed_entry", "log_root_mismatch", "transfer_without_entry"}
    assert rep.exit_code == 1


async def test_endless_tail_hits_the_audit_limit(tmp_path: Path) -> None:
    async with hostile(tmp_path, "endless_tail") as (addr, servicer):
        rep = await asyncio.wait_for(audit(addr, AuditLimits(entries_max=2_000)), 60)
    assert "audit_limit" in kinds(rep) and "unknown_entry_kind" in kinds(rep)
    assert servicer.calls["GetEntries"] <= 2_000 // 256 + 3


async def test_hanging_server_is_unreachable_within_the_deadline(tmp_path: Path) -> None:
    async with hostile(tmp_path, "hang") as (addr, _):
        rep = await asyncio.wait_for(audit(addr, AuditLimits(rpc_deadline_s=0.5)), 10)
    assert kinds(rep) == {"gateway_unreachable"} and rep.exit_code == 3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ccgw_audit_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.cli import run_main as main

    pub = tmp_path / "log.pub"
    pub.write_bytes(public_pem(OPERATOR))
    base = ["audit", "--log-pubkey", str(pub), "--state", str(tmp_path / "s.json")]
    base.append("--accept-unreleased-software")  # these logs hold no release
    gone = f"127.0.0.1:{_closed_port()}"
    assert main([*base, "--gateway", gone]) == 3
    assert "gateway_unreachable" in capsys.readouterr().out
    assert main(["audit", "--gateway", gone, "--log-pubkey", str(tmp_path / "missing.pub")]) == 2
    (tmp_path / "s.json").write_text(json.dumps(["not", "a", "state"]))
    assert main([*base, "--gateway", gone]) in (2, 3)  # the state is read once a gateway answers
    with pytest.raises(SystemExit) as usage:  # argparse: a required flag is missing
        main(["audit", "--gateway", gone])
    assert usage.value.code == 2
    capsys.readouterr()


async def test_ccgw_audit_exit_code_on_a_bad_state_file(tmp_path: Path) -> None:
    from tests.support.cli import run_main as main

    pub = tmp_path / "log.pub"
    pub.write_bytes(public_pem(OPERATOR))
    (tmp_path / "s.json").write_text("[1, 2]")
    async with hostile(tmp_path, "honest") as (addr, _):
        args = [
            "audit",
            "--gateway",
            addr,
            "--log-pubkey",
            str(pub),
            "--state",
            str(tmp_path / "s.json"),
            "--accept-unreleased-software",
        ]
        code = await asyncio.to_thread(main, [*args, "--allow-simulated-tee", str(_root(tmp_path))])
    assert code == 2


def _root(tmp_path: Path) -> Path:
    p = tmp_path / "root.pem"
    p.write_bytes(worker().vendor.root_pem())
    return p
