"""`ccgw verify` and `ccgw ask --report` against a real gateway and worker (simulated TEE): the
report of every listed worker grouped in tiers with a score, JSON for machines, exit 1 when an
enforced check refuses; the gateway's collateral cache reaches the client with the evidence."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from ccgw.cli import _parser
from ccgw.verify.attestation.report import Status
from tests.support.cluster import cluster
from tests.support.fake_engine import EchoEngine
from tests.vectors._paths import vectors_dir


async def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The command's handler in a thread (its own event loop), without `ccgw.cli.main`'s global
    logging set-up, which would outlive the captured stdout."""
    args = _parser().parse_args(argv)
    code = await asyncio.to_thread(args.func, args)
    return int(code), capsys.readouterr().out


async def test_verify_and_ask_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    col = tmp_path / "collateral"
    col.mkdir()
    shutil.copy(vectors_dir() / "tdx" / "pckcrl", col / "pck.crl")
    shutil.copy(vectors_dir() / "tdx" / "rootcrl.der", col / "root.crl")
    async with cluster(tmp_path, collateral_dir=col) as c:
        await c.add_worker({"echo": EchoEngine()})
        await c.deposit("client:alice", 1_000_000)
        (tmp_path / "t.jwt").write_text(c.token("client:alice", "client"))
        (tmp_path / "root.pem").write_bytes(c.vendor.root_pem())
        common = ["--gateway", c.address, "--token-file", str(tmp_path / "t.jwt")]
        common += ["--allow-simulated-tee", str(tmp_path / "root.pem")]
        common += c.trust_args(tmp_path)

        code, out = await run_cli(["verify", "--model", "echo", "--challenge", *common], capsys)
        assert code == 0, out
        assert "TRUSTED" in out and "[binding]" in out and "1 of 1 worker(s) trusted" in out
        assert "skip  root.real" in out

        code, out = await run_cli(["verify", "--model", "echo", "--json", *common], capsys)
        doc = json.loads(out)
        w = doc["workers"][0]
        assert code == 0 and doc["trusted"] and w["collateral_sources"] == ["gateway"]
        statuses = {ch["id"]: ch["status"] for ch in w["checks"]}
        assert statuses["cpu.signature"] == Status.PASS and statuses["evidence.nonce"] == "skip"

        strict = tmp_path / "strict.toml"
        strict.write_text(
            'version = 1\naccepted_roots = ["simulated"]\n[checks]\nenforce = ["cpu.revocation"]\n'
        )
        code, out = await run_cli(
            ["verify", "--model", "echo", "--policy", str(strict), *common], capsys
        )
        assert code == 1 and "REFUSED" in out and "0 of 1 worker(s) trusted" in out

        code, out = await run_cli(
            ["ask", "--model", "echo", "--prompt", "hi", "--report", *common], capsys
        )
        assert code == 0, out
        assert out.index("receipt: VERIFIED") < out.index("worker w-")
        assert "TRUSTED" in out and "  receipt: VERIFIED (job" in out
