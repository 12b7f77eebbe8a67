"""The `ccgw` command as separate processes, for tests that run what operators run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


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
    """Keys, the simulated vendor, a tiny model, a provider and an admin token, and a signed
    release of the simulated worker serving the model (t/release.json) in `t`; returns a client
    token for `client:app`."""
    for cmd in (
        ("keygen", str(t / "auth")),
        ("keygen", str(t / "log")),
        ("keygen", str(t / "release")),
        ("sim-root", str(t / "sim")),
        ("tiny-model", str(t / "model")),
    ):
        assert ccgw(*cmd).returncode == 0
    for cmd in (
        ("release", "build", "--version", "1.0.0", "--simulated-worker", "--model",
         f"tiny={t / 'model'}", "--out", str(t / "release.unsigned.json")),
        ("release", "sign", str(t / "release.unsigned.json"), "--key", str(t / "release.key"),
         "--out", str(t / "release.json")),
    ):  # fmt: skip
        done = ccgw(*cmd)
        assert done.returncode == 0, done.stderr
    prov = ccgw(
        "token", "--key", str(t / "auth.key"), "--sub", "provider:acme", "--role", "provider"
    )
    (t / "provider.jwt").write_text(prov.stdout)
    admin = ccgw("token", "--key", str(t / "auth.key"), "--sub", "admin:ops", "--role", "admin")
    (t / "admin.jwt").write_text(admin.stdout)
    return ccgw(
        "token", "--key", str(t / "auth.key"), "--sub", "client:app", "--role", "client"
    ).stdout.strip()


def trust(t: Path) -> list[str]:
    """What a verifying command passes to follow the releases of operator_files (the default)."""
    return ["--release-key", str(t / "release.pub"), "--log-pubkey", str(t / "log.pub")]


def release_trust(t: Path) -> Any:
    """The ReleaseTrust of `trust(t)`, for clients and auditors built in the test process."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from ccgw.client.releases import LogIdentity, ReleaseTrust
    from ccgw.verify.release.manifest import load_release_key

    pub = load_pem_public_key((t / "log.pub").read_bytes())
    assert isinstance(pub, Ed25519PublicKey)
    log = LogIdentity("ccgw-log", pub.public_bytes_raw(), "ccgw.local/log")
    return ReleaseTrust((load_release_key((t / "release.pub").read_bytes()),), log)


def start_gateway(
    t: Path, addr: str, *db_args: str, publish: bool = True
) -> subprocess.Popen[bytes]:
    """`ccgw gateway` on `addr`, trusting t/release.pub, with t/release.json published (again:
    a no-op on a log that has it); output goes to a file (a pipe nobody reads would fill and block
    it)."""
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
                "--release-key",
                str(t / "release.pub"),
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.time() + 60
    while time.time() < deadline:
        if b"listening" in out.read_bytes():
            if publish:
                tls: list[str] = []
                if "--tls-cert" in db:  # dev-certs put the CA next to the gateway's certificate
                    cert = Path(db[db.index("--tls-cert") + 1])
                    tls = ["--tls-ca", str(cert.parent / "ca.crt")]
                done = ccgw(
                    "release", "publish", str(t / "release.json"), "--gateway", addr,
                    "--token-file", str(t / "admin.jwt"), *tls,
                )  # fmt: skip
                assert done.returncode == 0, done.stdout + done.stderr
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
