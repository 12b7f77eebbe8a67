"""The production entry points as separate processes: keygen, token, sim-root, tiny-model, gateway,
worker, deposit, ask, audit — what an operator, a provider, an app and an auditor run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.processes import (
    ccgw,
    free_port,
    operator_files,
    start_gateway,
    start_worker,
    stop,
    trust,
)


@pytest.mark.slow
def test_operator_provider_app_and_auditor_flow(tmp_path: Path) -> None:
    t = tmp_path
    (t / "app.jwt").write_text(operator_files(t))  # keys, tokens, model, a signed release
    assert oct((t / "auth.key").stat().st_mode & 0o777) == "0o600"
    assert oct((t / "release.key").stat().st_mode & 0o777) == "0o600"
    addr = f"127.0.0.1:{free_port()}"
    gw = start_gateway(t, addr)
    worker = None
    try:
        worker = start_worker(t, addr)
        assert (
            ccgw(
                "deposit",
                "--db",
                str(t / "gw.db"),
                "--account",
                "client:app",
                "--amount-micro",
                "1000000",
                "--reference",
                "dep-1",
                "--log-key",
                str(t / "log.key"),
            ).returncode
            == 0
        )
        out = None
        for _ in range(60):
            out = ccgw(
                "ask",
                "--gateway",
                addr,
                "--token-file",
                str(t / "app.jwt"),
                "--model",
                "tiny",
                "--prompt",
                "hello",
                "--max-new-tokens",
                "5",
                "--allow-simulated-tee",
                str(t / "sim" / "root.pem"),
                *trust(t),
            )
            if out.returncode == 0:
                break
            time.sleep(1)  # the worker is still loading
        assert out is not None and out.returncode == 0, out.stderr[-1500:]
        assert "receipt: VERIFIED" in out.stdout
        audit = ccgw(
            "audit",
            "--gateway",
            addr,
            "--log-pubkey",
            str(t / "log.pub"),
            "--state",
            str(t / "audit.json"),
            "--allow-simulated-tee",
            str(t / "sim" / "root.pem"),
            "--release-key",
            str(t / "release.pub"),
        )
        assert audit.returncode == 0, audit.stdout + audit.stderr[-1500:]
        assert "AUDIT OK" in audit.stdout and "provider:acme=" in audit.stdout
        assert "jobs by release: 1 under release 1.0.0" in audit.stdout
        listed = ccgw("release", "show", "--gateway", addr, "--log-pubkey", str(t / "log.pub"))
        assert listed.returncode == 0, listed.stderr
        assert "every inclusion proof verified" in listed.stdout
        assert "index      1  release 1.0.0" in listed.stdout
        wrong = ccgw(
            "audit",
            "--gateway",
            addr,
            "--log-pubkey",
            str(t / "auth.pub"),
            "--state",
            str(t / "audit2.json"),
            "--allow-simulated-tee",
            str(t / "sim" / "root.pem"),
            "--release-key",
            str(t / "release.pub"),
        )
        assert wrong.returncode == 1 and "checkpoint_signature" in wrong.stdout
    finally:
        stop(worker, gw)
