"""The `ccgw` command as separate processes, for tests that run what operators run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


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


def operator_files(t: Path) -> str:
    """Keys, the simulated vendor, a tiny model and a provider token in `t`; returns a client token
    for `client:app`."""
    for cmd in (
        ("keygen", str(t / "auth")),
        ("keygen", str(t / "log")),
        ("sim-root", str(t / "sim")),
        ("tiny-model", str(t / "model")),
    ):
        assert ccgw(*cmd).returncode == 0
    prov = ccgw(
        "token", "--key", str(t / "auth.key"), "--sub", "provider:acme", "--role", "provider"
    )
    (t / "provider.jwt").write_text(prov.stdout)
    return ccgw(
        "token", "--key", str(t / "auth.key"), "--sub", "client:app", "--role", "client"
    ).stdout.strip()


def start_gateway(t: Path, addr: str, *db_args: str) -> subprocess.Popen[bytes]:
    """`ccgw gateway` on `addr`; output goes to a file (a pipe nobody reads would fill and block it)."""
    db = db_args or ("--db", str(t / "gw.db"))
    out = t / f"gateway-{time.monotonic_ns()}.log"
    with out.open("wb") as f:
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ccgw",
                "gateway",
                "--listen",
                addr,
                *db,
                "--init-db",
                "--auth-pubkey",
                str(t / "auth.pub"),
                "--log-key",
                str(t / "log.key"),
                "--allow-simulated-tee",
                str(t / "sim" / "root.pem"),
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.time() + 60
    while time.time() < deadline:
        if b"listening" in out.read_bytes():
            return p
        if p.poll() is not None:
            raise AssertionError(out.read_text()[-2000:])
        time.sleep(0.1)
    raise AssertionError("gateway did not start")


def start_worker(t: Path, addr: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
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
    )


def stop(*procs: subprocess.Popen[bytes] | None) -> None:
    for p in procs:
        if p is None:
            continue
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
