"""The operator's and the account holder's ledger commands, on SQLite and PostgreSQL through the
one store factory: nothing is created on a mistyped path; deposits need the log key, withdrawals
the holder's key; a request signed elsewhere is logged as is, a tampered one refused. And the SDK
checks that the log binds its account only to keys its holder knows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccgw.keys import write_keypair
from tests.support import pg
from tests.support.cli import run_main as main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_ledger_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str], db: str) -> None:
    t = tmp_path
    write_keypair(t / "log")
    write_keypair(t / "other")
    write_keypair(t / "alice")
    schema = pg.fresh_schema() if db == "postgres" else "ccgw"
    where = ["--db", pg.DSN if db == "postgres" else str(t / "gw.db"), "--db-schema", schema]
    key = ["--log-key", str(t / "log.key")]
    try:
        money = ["--account", "client:a", "--amount-micro", "1000", "--reference", "d1"]
        code, out = run(capsys, "deposit", *where, *key, *money)
        assert code == 2 and "init-db" in out  # no database is made by a deposit
        assert not (t / "gw.db").exists()
        assert run(capsys, "init-db", *where, *key)[0] == 0
        code, out = run(capsys, "deposit", *where, *key, *money)
        assert code == 0 and "logged at index 0" in out and "(1000, 0)" in out
        assert "already logged" in run(capsys, "deposit", *where, *key, *money)[1]
        other = ["--log-key", str(t / "other.key")]
        code, out = run(capsys, "deposit", *where, *other, *money)
        assert code == 1 and "another log key" in out
        prices = ["--default", "1000,2000", "--model", "big=5000,6000", "--fee-bps", "100"]
        assert run(capsys, "prices", *where, *key, *prices)[0] == 0
        assert run(capsys, "prices", *where, *key, "--default", "x")[0] == 2
        holder = ["--key", str(t / "alice.key"), "--account", "client:a"]
        assert run(capsys, "account-key", *holder, "--out", str(t / "k.json"))[0] == 0
        assert run(capsys, "account-key", *where, "--request", str(t / "k.json"))[0] == 0
        w = [*holder, "--amount-micro", "100", "--reference", "w1", "--out", str(t / "w.json")]
        assert run(capsys, "withdraw", *w)[0] == 0
        req = json.loads((t / "w.json").read_text())
        req["body"]["amount_micro"] = 900  # the operator inflates what the holder signed
        (t / "bad.json").write_text(json.dumps(req))
        code, out = run(capsys, "withdraw", *where, "--request", str(t / "bad.json"))
        assert code == 1 and "bad_signature" in out
        assert run(capsys, "withdraw", *where, "--request", str(t / "w.json"))[0] == 0
        too_much = [*holder, "--amount-micro", "5000", "--reference", "w2"]
        code, out = run(capsys, "withdraw", *where, *too_much)
        assert code == 1 and "negative_balance" in out
        (t / "junk.json").write_text("{")
        assert run(capsys, "withdraw", *where, "--request", str(t / "junk.json"))[0] == 2
        code, out = run(capsys, "rebuild-ledger", *where)
        assert code == 0 and "from 4 log entries" in out
        epoch = ["--from-size", "0", "--to-size", "4"]
        code, out = run(capsys, "settlement", *where, *key, *epoch)
        assert code == 2 and "checkpoint" in out  # no signed checkpoint yet
    finally:
        if db == "postgres":
            pg.drop_schema(schema)


async def test_sdk_checks_its_accounts_withdrawal_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ccgw.client.audit import LogIdentity
    from ccgw.client.errors import AnswerRejected
    from ccgw.verify import log_entries as le
    from tests.support.cluster import cluster

    async with cluster(tmp_path) as c:
        ident = LogIdentity("ccgw-log", c.gateway.checkpointer.public_raw, "ccgw.local/log")
        alice, bob = c.client("client:alice"), c.client("client:bob")
        mine, newer, gateways = (Ed25519PrivateKey.generate() for _ in range(3))
        raw = [k.public_key().public_bytes_raw() for k in (mine, newer)]
        with pytest.raises(AnswerRejected):  # nothing registered yet
            await alice.account_key(ident, raw)
        await c.gateway.store.append(le.account_key(mine, "client:alice"))
        await c.gateway.store.append(le.account_key(newer, "client:alice", previous=mine))
        assert await alice.account_key(ident, raw) == raw[1]
        # the gateway registers a key of its own for bob before bob does: bob's SDK sees it
        await c.gateway.store.append(le.account_key(gateways, "client:bob"))
        with pytest.raises(AnswerRejected, match="does not know"):
            await bob.account_key(ident, [mine.public_key().public_bytes_raw()])
