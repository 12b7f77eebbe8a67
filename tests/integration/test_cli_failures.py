"""Every expected failure class of the `ccgw` command, as a user meets it (a subprocess): one line
on stderr, `ccgw <command>: <what is wrong> (<what to do>)`, the documented exit code, and a
traceback only with --debug. Also: a worker exits 0 after draining on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import ccgw, free_port, operator_files, start_gateway, stop, trust


@dataclass
class Env:
    t: Path
    addr: str
    worker: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A TLS gateway (dev-certs) and a worker on the simulated TEE, as separate processes."""
    t = tmp_path_factory.mktemp("cli")
    (t / "app.jwt").write_text(operator_files(t))
    assert ccgw("dev-certs", str(t / "certs")).returncode == 0
    assert ccgw("dev-certs", str(t / "other")).returncode == 0
    addr = f"127.0.0.1:{free_port()}"
    gw = start_gateway(
        t,
        addr,
        "--db",
        str(t / "gw.db"),
        "--tls-cert",
        str(t / "certs" / "gateway.crt"),
        "--tls-key",
        str(t / "certs" / "gateway.key"),
    )
    log = (t / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "ccgw", "worker", "--gateway", addr, "--tls-ca",
         str(t / "certs" / "ca.crt"), "--token-file", str(t / "provider.jwt"), "--model",
         f"tiny={t / 'model'}", "--simulated-tee", str(t / "sim"), "--drain-grace-s", "5"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ok = ccgw("workers", "--gateway", addr, "--tls-ca", str(t / "certs" / "ca.crt"),
                  "--token-file", str(t / "app.jwt"), "--allow-simulated-tee",
                  str(t / "sim" / "root.pem"), "--wait-s", "60", *trust(t))  # fmt: skip
        assert ok.returncode == 0, ok.stderr + (t / "worker.log").read_text()[-2000:]
        yield Env(t, addr, worker)
    finally:
        stop(worker, gw)
        log.close()


def one_line(r: subprocess.CompletedProcess[str], command: str, code: int, *words: str) -> str:
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("WARNING:")]
    assert r.returncode == code, r.stderr
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"ccgw {command}: ") and "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def ask(
    e: Env, *extra: str, token: str = "app.jwt", released: bool = True
) -> subprocess.CompletedProcess[str]:
    """`ccgw ask`, following the operator's releases unless `released` is False."""
    return ccgw("ask", "--gateway", e.addr, "--token-file", str(e.t / token), "--model", "tiny",
                "--prompt", "hi", "--max-new-tokens", "2", *extra,
                *(trust(e.t) if released else ()))  # fmt: skip


def sim(e: Env) -> tuple[str, str]:
    return "--allow-simulated-tee", str(e.t / "sim" / "root.pem")


def ca(e: Env, name: str = "certs") -> tuple[str, str]:
    return "--tls-ca", str(e.t / name / "ca.crt")


def test_input_errors_exit_2(env: Env) -> None:
    t = env.t
    one_line(ccgw("token", "--key", str(t / "nope.key"), "--sub", "a", "--role", "client"),
             "token", 2, "does not exist")  # fmt: skip
    one_line(ccgw("token", "--key", str(t / "auth.pub"), "--sub", "a", "--role", "client"),
             "token", 2, "not a PEM private key", "ccgw keygen")  # fmt: skip
    (t / "garbage.jwt").write_text("not-a-token\n")
    one_line(ask(env, *ca(env), *sim(env), token="garbage.jwt"), "ask", 2, "not a token",
             "ccgw token")  # fmt: skip
    one_line(ask(env, *ca(env), *sim(env), token="provider.jwt"), "ask", 2, "not a client token")
    (t / "bad.toml").write_text("version = 1\naccepted_roots = []\nmax_evidence_age_s = -1\n")
    one_line(ask(env, *ca(env), "--policy", str(t / "bad.toml")), "ask", 2, "policy file")
    one_line(ccgw("keygen", str(t / "auth")), "keygen", 2, "already exists", "--force")
    gw = ("gateway", "--listen", "127.0.0.1:0", "--db", str(t / "x.db"))
    one_line(ccgw(*gw, "--auth-pubkey", str(t / "auth.key"), "--log-key", str(t / "log.key")),
             "gateway", 2, "not a PEM public key")  # fmt: skip
    one_line(ccgw(*gw, "--auth-pubkey", str(t / "auth.pub"), "--log-key", str(t / "log.pub")),
             "gateway", 2, "log key", "ccgw keygen")  # fmt: skip
    one_line(ask(env, *ca(env), "--allow-simulated-tee", str(t)), "ask", 2, "is a directory")
    # no silent accept-anything default: a verifier without a release key says what to pass
    one_line(ask(env, *ca(env), *sim(env), released=False), "ask", 2, "no release key",
             "--release-key", "--accept-unreleased-software")  # fmt: skip
    one_line(ask(env, *ca(env), *sim(env), "--release-key", str(t / "release.pub"),
                 released=False), "ask", 2, "--log-pubkey")  # fmt: skip
    one_line(ccgw(*gw, "--auth-pubkey", str(t / "auth.pub"), "--log-key", str(t / "log.key")),
             "gateway", 2, "no release key", "--release-key")  # fmt: skip


def test_gateway_unreachable_or_tls_mismatch_exit_3(env: Env) -> None:
    down = f"127.0.0.1:{free_port()}"
    r = ccgw("ask", "--gateway", down, "--token-file", str(env.t / "app.jwt"), "--model", "m",
             "--prompt", "p", *sim(env), *trust(env.t))  # fmt: skip
    one_line(r, "ask", 3, "cannot reach the gateway")
    one_line(ask(env, *ca(env, "other"), *sim(env)), "ask", 3, "TLS", "--tls-ca")
    one_line(ask(env, *sim(env)), "ask", 3, "--tls-ca")  # plaintext to a TLS gateway


def test_refused_evidence_exits_1_and_names_the_fix(env: Env) -> None:
    line = one_line(ask(env, *ca(env)), "ask", 1, "passes the client's policy")
    assert "--allow-simulated-tee" in line
    r = ccgw("workers", "--gateway", env.addr, *ca(env), "--token-file", str(env.t / "app.jwt"),
             *trust(env.t))  # fmt: skip
    assert "REFUSED" in r.stdout
    one_line(r, "workers", 1, "no worker passes your policy")


def test_funds_and_settings(env: Env) -> None:
    one_line(ask(env, *ca(env), *sim(env)), "ask", 3, "ccgw deposit")  # no funds yet
    r = subprocess.run(
        [sys.executable, "-m", "ccgw", "ask", "--prompt", "x"],
        env={"CCGW_MAX_NEW_TOKENS": "lots", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    one_line(r, "ask", 2, "CCGW_MAX_NEW_TOKENS")


def test_accept_unreleased_software_warns_at_start_and_on_every_use(env: Env) -> None:
    r = ccgw("workers", "--gateway", env.addr, *ca(env), "--token-file", str(env.t / "app.jwt"),
             *sim(env), "--accept-unreleased-software")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "release=NOT CHECKED (--accept-unreleased-software)" in r.stdout
    warned = [ln for ln in r.stderr.splitlines() if ln.startswith("WARNING:")]
    assert any("NOT checked against any release" in w for w in warned)  # at start
    assert any("without checking its software against any release" in w for w in warned)  # use
    assert "Traceback" not in r.stderr and "sdk.py" not in r.stderr  # one line each
    r = ccgw("workers", "--gateway", env.addr, *ca(env), "--token-file", str(env.t / "app.jwt"),
             *sim(env), *trust(env.t))  # fmt: skip
    assert (
        r.returncode == 0
        and "release=release 1.0.0" in r.stdout
        and "WARNING: --acc" not in r.stderr
    )


def test_log_state_keeps_the_release_checkpoint_between_runs(env: Env) -> None:
    state = env.t / "log-state.json"
    for _ in range(2):  # the second run checks consistency with the first run's checkpoint
        r = ccgw("workers", "--gateway", env.addr, *ca(env), "--token-file",
                 str(env.t / "app.jwt"), *sim(env), *trust(env.t), "--log-state", str(state))  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert json.loads(state.read_text())["size"] >= 2
    state.write_text('{"origin": "elsewhere", "size": 1, "root": "' + "00" * 32 + '"}')
    r = ccgw("workers", "--gateway", env.addr, *ca(env), "--token-file", str(env.t / "app.jwt"),
             *sim(env), *trust(env.t), "--log-state", str(state))  # fmt: skip
    one_line(r, "workers", 2, "for another log")


def test_debug_shows_the_traceback(env: Env) -> None:
    r = ccgw("--debug", "token", "--key", str(env.t / "nope.key"), "--sub", "a", "--role", "client")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_worker_drains_and_exits_0_on_sigterm(env: Env) -> None:
    env.worker.send_signal(signal.SIGTERM)
    assert env.worker.wait(timeout=30) == 0
    time.sleep(0.2)
    assert "drained" in (env.t / "worker.log").read_text()
