"""deploy/ stays deployable: every manifest parses, every `ccgw` command line in them parses with
the real CLI parser (compose commands, `sh` scripts, Kubernetes args and probes, systemd
ExecStart), images run as a non-root user with writable data, the systemd unit pins the model
digest, uses TLS and does not restart-loop on permanent errors, and the example policy loads.
(deploy/image and deploy/release belong to the release tooling and are not covered here.)"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ccgw.cli import _parser
from ccgw.verify.attestation.policy import load_policy_file

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OURS = [
    p
    for p in DEPLOY.rglob("*")
    if p.is_file() and p.relative_to(DEPLOY).parts[0] not in ("image", "release")
]
MANIFESTS = sorted(p for p in OURS if p.suffix in (".yaml", ".yml"))


def docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def ccgw_lines_in_shell(script: str) -> Iterator[list[str]]:
    """The arguments of each `ccgw` command in a shell script (redirections dropped)."""
    for line in script.replace("\\\n", " ").splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        words: list[str] = []
        for tok in [*lex, ";"]:
            if tok in ("&&", "||", ";", "|", ">", ">>", "<"):
                words = words[1:] if words[:1] == ["exec"] else words
                if words[:1] == ["ccgw"] or (words and words[0].endswith("/ccgw")):
                    yield words[1:]
                words = [] if tok not in (">", ">>", "<") else ["<redirect>"]
            elif words[:1] != ["<redirect>"]:
                words.append(tok)


def compose_commands(doc: dict[str, Any]) -> Iterator[list[str]]:
    for name, svc in doc.get("services", {}).items():
        entry, cmd = svc.get("entrypoint"), svc.get("command")
        image = str(svc.get("image", ""))
        if entry and entry[:2] == ["sh", "-ec"]:
            for script in cmd or []:
                yield from ccgw_lines_in_shell(script)
        elif image.startswith("ccgw") and cmd:
            yield list(cmd)  # the image's ENTRYPOINT is ccgw
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test[:2] == ["CMD", "ccgw"]:
            yield test[2:]
        assert name


def k8s_commands(doc: dict[str, Any]) -> Iterator[list[str]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    for c in spec.get("containers", []):
        if "args" in c:
            yield c["args"]  # the image's ENTRYPOINT is ccgw
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            cmd = (c.get(probe) or {}).get("exec", {}).get("command")
            if cmd:
                assert cmd[0] == "ccgw"
                yield cmd[1:]


def all_commands() -> list[tuple[str, list[str]]]:
    out = []
    for m in MANIFESTS:
        for d in docs(m):
            gen = compose_commands(d) if "services" in d else k8s_commands(d)
            out += [(m.name, argv) for argv in gen]
    for unit in DEPLOY.rglob("*.service"):
        for line in unit.read_text().replace("\\\n", " ").splitlines():
            if line.startswith("ExecStart="):
                out += [
                    (unit.name, a) for a in ccgw_lines_in_shell(line.removeprefix("ExecStart="))
                ]
    return out


def test_every_manifest_parses() -> None:
    assert {p.name for p in MANIFESTS} >= {"compose.yaml", "gateway.yaml", "worker.yaml"}
    kinds = {d.get("kind") for m in MANIFESTS for d in docs(m)}
    assert {"Deployment", "Service", "PodDisruptionBudget"} <= kinds


@pytest.mark.parametrize(("where", "argv"), all_commands(), ids=lambda v: str(v)[:60])
def test_every_ccgw_command_parses(where: str, argv: list[str]) -> None:
    args = _parser().parse_args(argv)  # SystemExit (usage error) fails the test
    assert callable(args.func), where


def test_enough_commands_are_checked() -> None:
    cmds = {argv[0] for _, argv in all_commands()}
    assert {
        "gateway",
        "worker",
        "proxy",
        "health",
        "sim-root",
        "dev-certs",
        "keygen",
        "token",
    } <= cmds


def test_gateway_dsn_comes_from_a_secret_and_probes_use_grpc_health() -> None:
    (dep, svc, pdb) = docs(DEPLOY / "k8s" / "gateway.yaml")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    (dsn,) = [e for e in c["env"] if e["name"] == "CCGW_DB"]
    assert dsn["valueFrom"]["secretKeyRef"]["key"] == "dsn"
    assert not any("postgresql://" in a for a in c["args"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["exec"]["command"][1] == "health"
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert svc["kind"] == "Service" and pdb["spec"]["minAvailable"] >= 1


def test_worker_manifest_pins_the_model_and_runs_in_a_confidential_runtime() -> None:
    (dep,) = docs(DEPLOY / "k8s" / "worker.yaml")
    spec = dep["spec"]["template"]["spec"]
    assert "kata" in spec["runtimeClassName"] and spec["terminationGracePeriodSeconds"] > 60
    args = spec["containers"][0]["args"]
    assert re.search(r"=/models/\w+@[0-9a-f]{64}$", args[args.index("--model") + 1])
    assert "--tls-ca" in args and "--simulated-tee" not in args


def test_systemd_unit_pins_digest_uses_tls_and_stops_on_permanent_errors() -> None:
    unit = (DEPLOY / "systemd" / "ccgw-worker.service").read_text()
    assert re.search(r"^RestartPreventExitStatus=.*\b2\b", unit, re.M)
    assert "Restart=on-failure" in unit
    (argv,) = [a for name, a in all_commands() if name == "ccgw-worker.service"]
    assert re.search(r"@[0-9a-f]{64}$", argv[argv.index("--model") + 1])
    assert "--tls-ca" in argv
    stop = int(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1))  # type: ignore[union-attr]
    assert stop > float(argv[argv.index("--drain-grace-s") + 1])


def test_images_run_as_non_root_with_writable_data() -> None:
    df = (DEPLOY / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", df, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"chown ccgw:ccgw /data /secrets", df)
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "**/*.key"} <= set(ignore)
    compose = docs(DEPLOY / "compose.yaml")[0]
    for svc in compose["services"].values():  # our images: never root, state on volumes
        if str(svc.get("image", "")).startswith("ccgw"):
            assert "user" not in svc
            assert any(v.endswith(":/secrets") for v in svc["volumes"])


def test_example_policy_loads() -> None:
    policy = load_policy_file(DEPLOY / "policy.example.toml")
    assert not policy.accepts_simulated and policy.allow_debug is False
    assert policy.allowed_measurements
