"""Property, on SQLite and on PostgreSQL: any history of deposits, jobs (posted, voided, retried),
withdrawals and price changes audits clean; then ONE random mutation of a stored row or log entry
(delete, insert, change kind / account / amount, reorder) that changes what the gateway stores is
flagged by the next audit, by name.

Mutated: the log (log_entries), the ledger view (postings), the running balances (accounts), the
checkpoints and the evidence bundles. Not mutated: holds (reservations, not money: ADR 12), and the
view's index tables and Merkle nodes (rebuilt from the log by rebuild_view; a corrupted one shows
when it is used: a refused append, or a proof that does not verify)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccgw.client.audit import PROBLEM_KINDS, Auditor, LogIdentity
from ccgw.verify import log_entries as le
from tests.support import pg
from tests.support.ledger import (
    ACCOUNTS,
    CLIENTS,
    OPERATOR_PUB,
    PROVIDERS,
    Raw,
    log_server,
    open_test_store,
    run_history,
    worker,
)

ops = st.one_of(
    st.tuples(st.just("deposit"), st.sampled_from(ACCOUNTS), st.integers(1, 5_000)),
    st.tuples(
        st.just("job"),
        st.sampled_from(CLIENTS),
        st.sampled_from(PROVIDERS),
        st.integers(0, 3_000),
        st.integers(0, 3_000),
        st.sampled_from(["posted", "voided", "retried"]),
    ),
    st.tuples(st.just("withdraw"), st.sampled_from(ACCOUNTS), st.integers(1, 3_000)),
    st.tuples(
        st.just("prices"), st.integers(0, 5_000), st.integers(0, 5_000), st.integers(0, 10_000)
    ),
)
TARGETS = ("log_entries", "postings", "accounts", "checkpoints", "evidence")
MUTATIONS = ("delete", "insert", "kind", "account", "amount", "order")
mutations = st.tuples(
    st.sampled_from(TARGETS),
    st.sampled_from(MUTATIONS),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.integers(1, 10_000),
)
KEYS = {
    "log_entries": "idx",
    "postings": "seq",
    "accounts": "account",
    "checkpoints": "size",
    "evidence": "digest",
}


def _edit_body(body: bytes, a: int, d: int, field: str) -> bytes:
    obj = json.loads(body)
    if field == "account":
        for k in ("account", "fee_account"):
            if k in obj:
                obj[k] = obj[k] + "z"
                return le.canonical(obj)
        if "evidence_sha256" in obj:
            obj["evidence_sha256"] = format(a % 16, "x") + obj["evidence_sha256"][1:]
            return le.canonical(obj)
    for k in ("amount_micro", "fee_bps", "from_index"):
        if k in obj:
            obj[k] = obj[k] + d
            return le.canonical(obj)
    k = sorted(obj)[a % len(obj)]
    obj[k] = obj[k] + "A" if isinstance(obj[k], str) else obj[k]
    return le.canonical(obj)


def mutate(raw: Raw, target: str, op: str, a: int, b: int, d: int) -> None:
    key = KEYS[target]
    rows = raw.q(f"SELECT * FROM {target} ORDER BY {key}")
    if not rows:
        return
    row, other = rows[a % len(rows)], rows[b % len(rows)]
    if target == "checkpoints":  # only the latest is served; deleting the only one makes the
        row = rows[-1]  # gateway sign the same tree again: that changes nothing
        if op == "delete" and len(rows) == 1:
            return
    upd = f"UPDATE {target} SET {{}} = ? WHERE {key} = ?"
    if op == "delete":
        raw.q(f"DELETE FROM {target} WHERE {key} = ?", (row[0],))
    elif op == "order" and target in ("log_entries", "postings") and row[0] != other[0]:
        raw.q(upd.format(key), (-1, row[0]))
        raw.q(upd.format(key), (row[0], other[0]))
        raw.q(upd.format(key), (other[0], -1))
    elif op == "order" and target == "accounts":
        raw.q(upd.format("balance_micro"), (other[1], row[0]))
        raw.q(upd.format("balance_micro"), (row[1], other[0]))
    elif op == "insert" and target == "log_entries":
        raw.q(
            "INSERT INTO log_entries VALUES (?, ?, ?, ?)",
            (rows[-1][0] + 1, row[1], row[2], os.urandom(32)),
        )
    elif op == "insert" and target == "postings":
        free = (
            row[0] + 4
            if not raw.q("SELECT 1 FROM postings WHERE seq = ?", (row[0] + 4,))
            else rows[-1][0] + 1
        )
        raw.q("INSERT INTO postings VALUES (?, ?, ?, ?, ?, ?, ?)", (free, *row[1:]))
    elif op == "insert" and target == "accounts":
        raw.q("INSERT INTO accounts VALUES (?, ?, 0)", (f"client:new{a % 7}", d % 3))
    elif op == "kind" and target == "log_entries":
        kinds = [*le.KINDS, "bogus"]
        raw.q(upd.format("kind"), (kinds[(kinds.index(row[1]) + 1 + a) % len(kinds)], row[0]))
    elif op == "kind" and target == "postings":
        kinds = ["reward", "deposit", "withdrawal", "fee_sweep"]
        raw.q(upd.format("kind"), (kinds[(kinds.index(row[3]) + 1 + a % 3) % 4], row[0]))
    elif target == "log_entries":
        raw.q(upd.format("body"), (_edit_body(bytes(row[2]), a, d, op), row[0]))
    elif op == "account" and target == "postings":
        raw.q(
            upd.format("account"),
            (ACCOUNTS[a % 4] if row[5] != ACCOUNTS[a % 4] else "external", row[0]),
        )
    elif target == "postings":
        raw.q(upd.format("amount_micro"), (row[6] + d, row[0]))
    elif op == "account" and target == "accounts":
        raw.q(upd.format("account"), (row[0] + "z", row[0]))
    elif target == "accounts":
        raw.q(upd.format("balance_micro"), (row[1] + d, row[0]))
    elif target == "checkpoints":
        text = (
            str(row[1]).replace("\n", f"\n{d}", 1)
            if op == "kind"
            else str(row[1])[:-10] + "AAAAAAAAA\n"
        )
        raw.q(upd.format("text"), (text, row[0]))
    elif target == "evidence":
        bundle = bytearray(row[1])
        bundle[a % len(bundle)] ^= 1 + d % 255
        raw.q(upd.format("bundle"), (bytes(bundle), row[0]))


EXPECTED = {  # a mutation of these always shows (at least) as one of these problems
    "log_entries": {"log_root_mismatch"},
    "checkpoints": {"checkpoint_signature", "gateway_misbehaving", "history_rewritten"},
    "evidence": {"forged_receipt"},
}


async def scenario(kind: str, history: list[tuple[Any, ...]], mutation: tuple[Any, ...]) -> None:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        store, schema = open_test_store(kind, tmp)
        raw = Raw(tmp / "s.db", schema)
        try:
            async with log_server(store) as (addr, cp):
                await run_history(store, history, cp)
                await cp.maybe_sign(force=True)
                policy, roots = worker().auditor_trust()
                log_id = LogIdentity("ccgw-log", OPERATOR_PUB, "ccgw.local/log")
                async with grpc.aio.insecure_channel(addr) as ch:
                    audit = Auditor(ch, log_id, policy, roots, state_path=tmp / "state.json")
                    clean = await audit.run()
                    assert clean.ok, clean.problems
                    target = mutation[0]
                    if target == "evidence" and not raw.q(
                        "SELECT 1 FROM log_entries WHERE kind = 'receipt'"
                    ):
                        return  # no receipt names the bundle: nothing served depends on it
                    before = raw.dump(target)
                    mutate(raw, *mutation)
                    if raw.dump(target) == before:
                        return  # the mutation changed nothing
                    rep = await Auditor(
                        ch, log_id, policy, roots, state_path=tmp / "state.json"
                    ).run()
            kinds = {p.kind for p in rep.problems}
            assert kinds, f"{mutation} was not flagged"
            assert kinds <= PROBLEM_KINDS, kinds
            if target in EXPECTED and mutation[1:2] != ("insert",):  # an insert lands past the
                assert kinds & EXPECTED[target], (mutation, kinds)  # checkpoint: rules name it
        finally:
            raw.close()
            await store.close()
            if schema:
                pg.drop_schema(schema)


SETTINGS = {
    "deadline": None,
    "derandomize": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


@settings(max_examples=40, **SETTINGS)  # type: ignore[arg-type]
@given(history=st.lists(ops, max_size=10), mutation=mutations)
def test_every_mutation_is_flagged_sqlite(
    history: list[tuple[Any, ...]], mutation: tuple[Any, ...]
) -> None:
    asyncio.run(scenario("sqlite", history, mutation))


@pytest.mark.postgres
@settings(max_examples=15, **SETTINGS)  # type: ignore[arg-type]
@given(history=st.lists(ops, max_size=8), mutation=mutations)
def test_every_mutation_is_flagged_postgres(
    history: list[tuple[Any, ...]], mutation: tuple[Any, ...]
) -> None:
    pg.fresh_schema()  # skips when no server answers
    asyncio.run(scenario("postgres", history, mutation))
