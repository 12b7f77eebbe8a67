"""The CLI's own rules, in process: every option has help text; settings come from flag > env >
config file > default; keygen and dev-certs never overwrite silently; doctor against fake
hardware says what to fix, one line per check."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from ccgw.cli import _parser, apply_settings
from ccgw.commands._common import CliError
from ccgw.devcerts import make_dev_certs
from ccgw.doctor import FAIL, OK, SKIP, WARN, Machine, ModelArg, run_checks
from ccgw.keys import write_keypair
from tests.support.evidence_builders import GpuStub
from tests.support.fake_hw import FakeTsm, fake_pynvml


def _undocumented(name: str, p: argparse.ArgumentParser) -> list[str]:
    out = []
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub_name, sub in a.choices.items():
                out += _undocumented(f"{name} {sub_name}", sub)
        elif not isinstance(a, argparse._HelpAction) and not (a.help or "").strip():
            out.append(f"{name} {'/'.join(a.option_strings) or a.dest}")
    return out


def test_every_option_of_every_command_has_help() -> None:
    # derive-policy has its own parser (with help) behind a REMAINDER argument
    assert [m for m in _undocumented("ccgw", _parser()) if m != "ccgw derive-policy args"] == []


def settings(
    argv: list[str], env: dict[str, str], tmp: Path, toml: str | None = None
) -> argparse.Namespace:
    parser = _parser()
    if toml is not None:
        (tmp / "c.toml").write_text(toml)
        argv = ["--config", str(tmp / "c.toml"), *argv]
    apply_settings(parser, argv, env)
    return parser.parse_args(argv)


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    base = ["ask", "--token-file", "t.jwt", "--model", "m", "--prompt", "p"]
    toml = 'gateway = "file:1"\nmax-new-tokens = 7\n[ask]\ngateway = "table:1"\n'
    # the required --gateway may come from any layer
    assert settings(base, {}, tmp_path, toml).gateway == "table:1"
    assert settings(base, {"CCGW_GATEWAY": "env:1"}, tmp_path, toml).gateway == "env:1"
    assert (
        settings([*base, "--gateway", "flag:1"], {"CCGW_GATEWAY": "env:1"}, tmp_path, toml).gateway
        == "flag:1"
    )
    ns = settings(base, {"CCGW_GATEWAY": "env:1", "CCGW_POST_QUANTUM": "yes"}, tmp_path, toml)
    assert ns.max_new_tokens == 7 and ns.post_quantum is True
    assert settings([*base, "--gateway", "g"], {}, tmp_path).max_new_tokens == 64  # default
    with pytest.raises(SystemExit):  # still required when no layer gives it
        settings(base, {}, tmp_path)
    ns = settings(base, {"CCGW_CONFIG": str(tmp_path / "c.toml")}, tmp_path)  # the file by env
    assert ns.gateway == "table:1"


@pytest.mark.parametrize(
    ("env", "toml", "message"),
    [
        ({"CCGW_MAX_NEW_TOKENS": "many"}, None, "CCGW_MAX_NEW_TOKENS"),
        ({"CCGW_POST_QUANTUM": "maybe"}, None, "true or false"),
        ({}, "[ask]\ngatway = 'x'\n", "no option 'gatway'"),
        ({}, "gateway = \n", "not valid TOML"),
        ({}, "[ask]\nmax-new-tokens = [1]\n", "string or number"),
    ],
)
def test_bad_settings_are_one_line_errors(
    tmp_path: Path, env: dict[str, str], toml: str | None, message: str
) -> None:
    with pytest.raises(CliError, match=message):
        settings(["ask", "--gateway", "g"], env, tmp_path, toml)


def test_keygen_creates_folders_and_refuses_to_overwrite(tmp_path: Path) -> None:
    priv, pub = write_keypair(tmp_path / "a" / "b" / "auth")
    assert priv.stat().st_mode & 0o777 == 0o600 and pub.exists()
    before = priv.read_bytes()
    with pytest.raises(FileExistsError):
        write_keypair(tmp_path / "a" / "b" / "auth")
    assert priv.read_bytes() == before
    write_keypair(tmp_path / "a" / "b" / "auth", force=True)
    assert priv.read_bytes() != before


def test_dev_certs_chain_and_names(tmp_path: Path) -> None:
    files = make_dev_certs(tmp_path / "certs", ["gw.example"])
    assert all(f.exists() for f in files)
    assert (tmp_path / "certs" / "gateway.key").stat().st_mode & 0o777 == 0o600
    leaf = x509.load_pem_x509_certificates((tmp_path / "certs" / "gateway.crt").read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {str(n.value) for n in san}
    assert {"localhost", "127.0.0.1", "::1", "gw.example"} <= names
    ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "ca.crt"))
    ctx.load_cert_chain(tmp_path / "certs" / "client.crt", tmp_path / "certs" / "client.key")
    leaf.verify_directly_issued_by(
        x509.load_pem_x509_certificate((tmp_path / "certs" / "ca.crt").read_bytes())
    )
    with pytest.raises(FileExistsError):
        make_dev_certs(tmp_path / "certs")


def _by_name(checks: list) -> dict[str, tuple[str, str]]:  # type: ignore[type-arg]
    return {c.name: (c.status, c.line()) for c in checks}


def test_doctor_on_a_good_machine(tmp_path: Path) -> None:
    from ccgw.verify.digests import model_dir_sha256

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    digest = model_dir_sha256(model)
    m = Machine(
        tsm_fs=FakeTsm("tdx_guest", lambda i: b"Q" + i),
        tsm_root="/tsm/report",
        nvml=fake_pynvml(attester=GpuStub()),
        clock=lambda: (True, 0.02),
        gateway_probe=lambda: "SERVING",
        models=[ModelArg("m", model, digest), ModelArg("n", model, None)],
    )
    got = _by_name(run_checks(m))
    assert got["cpu-tee"][0] == OK and "tdx" in got["cpu-tee"][1]
    for name in ("nvml", "gpu-cc", "nvml-attest", "gateway", "clock", "model m"):
        assert got[name][0] == OK, got[name]
    assert got["model n"][0] == WARN and f"n={model}@{digest.hex()}" in got["model n"][1]
    assert got["gpu-ready"][0] == WARN  # the fake's GPUs are not set ready


def test_doctor_names_each_problem_and_its_fix(tmp_path: Path) -> None:
    def down() -> str:
        raise OSError("connection refused")

    m = Machine(
        tsm_fs=FakeTsm("sev_guest", lambda i: i),
        tsm_root="/absent",
        nvml=fake_pynvml(cc_on=False, attester=GpuStub()),
        clock=lambda: (False, 16.0),
        gateway_probe=down,
        models=[ModelArg("m", tmp_path, b"\x01" * 32)],
    )
    checks = run_checks(m)
    got = _by_name(checks)
    for name, fix in (
        ("cpu-tee", "SEV-SNP or TDX guest"),
        ("gpu-cc", "conf-compute -scc on"),
        ("clock", "chrony"),
        ("gateway", "--tls-ca"),
        ("model m", "model folder"),
    ):
        assert got[name][0] == FAIL and "fix: " + "" in got[name][1] and fix in got[name][1]
    assert all("\n" not in c.line() for c in checks)
    none = _by_name(
        run_checks(
            Machine(
                nvml=fake_pynvml(init_fails=True),
                tsm_root="/absent",
                tsm_fs=FakeTsm("sev_guest", lambda i: i),
                clock=lambda: (True, 0),
            )
        )
    )
    assert none["nvml"][0] == FAIL and "driver" in none["nvml"][1]
    assert none["gateway"][0] == SKIP and none["model"][0] == SKIP
    cpu_only = _by_name(
        run_checks(
            Machine(
                want_gpu=False,
                tsm_root="/absent",
                tsm_fs=FakeTsm("sev_guest", lambda i: i),
                clock=lambda: (True, 0),
            )
        )
    )
    assert cpu_only["gpu"][0] == SKIP
    assert FAIL in {c.status for c in checks}


def test_a_missing_optional_package_names_the_extra_to_install() -> None:
    from ccgw.cli import expected_failure

    code, message = expected_failure(ModuleNotFoundError("No module named 'torch'", name="torch"))
    assert code == 2 and "pip install 'ccgw[worker]'" in message
    code, message = expected_failure(ModuleNotFoundError("x", name="psycopg.pq"))
    assert code == 2 and "ccgw[postgres]" in message
    # a module no extra provides is a bug, reported as one
    assert expected_failure(ModuleNotFoundError("x", name="ccgw.nowhere")) is None


def test_release_trust_comes_from_flags_env_or_the_config_file(tmp_path: Path) -> None:
    base = ["ask", "--gateway", "g", "--token-file", "t.jwt", "--model", "m", "--prompt", "p"]
    env = {"CCGW_RELEASE_KEY": "env.pub", "CCGW_LOG_PUBKEY": "log.pub"}
    ns = settings(base, env, tmp_path)
    assert (ns.release_key, ns.log_pubkey) == (Path("env.pub"), Path("log.pub"))
    toml = 'release-key = "file.pub"\nlog-pubkey = "flog.pub"\n'
    ns = settings(base, {}, tmp_path, toml)
    assert (ns.release_key, ns.log_pubkey) == (Path("file.pub"), Path("flog.pub"))
    ns = settings(base, {"CCGW_ACCEPT_UNRELEASED_SOFTWARE": "yes"}, tmp_path)
    assert ns.accept_unreleased_software is True and ns.release_key is None
    assert settings(base, {}, tmp_path).accept_unreleased_software is False


def test_an_input_file_is_read_within_a_bound(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """A hostile or mistaken path (/dev/zero, a huge file) ends in one line, not an exhausted
    memory: every command reads its inputs through the one bounded reader."""
    from ccgw.commands import _common

    big = tmp_path / "big.pem"
    big.write_bytes(b"x" * 2048)
    with pytest.raises(_common.CliError, match="larger than"):
        _common.read_bytes(big, "key", max_bytes=1024)
    assert _common.read_bytes(big, "key", max_bytes=4096) == b"x" * 2048
    with pytest.raises(_common.CliError, match="larger than 0 MiB"):
        _common.read_bytes(Path("/dev/zero"), "token", max_bytes=1024)
