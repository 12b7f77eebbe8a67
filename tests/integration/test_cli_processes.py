"""The production entry points as separate processes: keygen, token, sim-root, tiny-model, gateway,
worker, deposit, ask, audit — what an operator, a provider, an app and an auditor run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def ccgw(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccgw", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_operator_provider_app_and_auditor_flow(tmp_path: Path) -> None:
    t = tmp_path
    assert ccgw("keygen", str(t / "auth")).returncode == 0
    assert ccgw("keygen", str(t / "log")).returncode == 0
    assert oct((t / "auth.key").stat().st_mode & 0o777) == "0o600"
    prov = ccgw(
        "token", "--key", str(t / "auth.key"), "--sub", "provider:acme", "--role", "provider"
    )
    app = ccgw("token", "--key", str(t / "auth.key"), "--sub", "client:app", "--role", "client")
    (t / "provider.jwt").write_text(prov.stdout)
    (t / "app.jwt").write_text(app.stdout)
    assert ccgw("sim-root", str(t / "sim")).returncode == 0
    assert ccgw("tiny-model", str(t / "model")).returncode == 0
    port = free_port()
    addr = f"127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    gw = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ccgw",
            "gateway",
            "--listen",
            addr,
            "--db",
            str(t / "gw.db"),
            "--auth-pubkey",
            str(t / "auth.pub"),
            "--log-key",
            str(t / "log.key"),
            "--allow-simulated-tee",
            str(t / "sim" / "root.pem"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    worker = None
    try:
        assert gw.stdout is not None
        line = ""
        deadline = time.time() + 60
        while "listening" not in line and time.time() < deadline:
            line = gw.stdout.readline()
        assert "listening" in line
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ccgw",
                "worker",
                "--gateway",
                addr,
                "--token-file",
                str(t / "provider.jwt"),
                "--model",
                f"tiny={t / 'model'}",
                "--simulated-tee",
                str(t / "sim"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert (
            ccgw(
                "deposit",
                "--db",
                str(t / "gw.db"),
                "--account",
                "client:app",
                "--amount-micro",
                "1000000",
                "--transfer-id",
                "dep-1",
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
        )
        assert audit.returncode == 0, audit.stdout + audit.stderr[-1500:]
        assert "AUDIT OK" in audit.stdout and "provider:acme=" in audit.stdout
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
        )
        assert wrong.returncode == 1 and "checkpoint_signature" in wrong.stdout
    finally:
        for p in (worker, gw):
            if p is not None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
