"""Policy is data: a TOML/JSON file loads to a Policy; a malformed one is refused with every
problem listed; empty allow-lists are refused; a policy derived from evidence loads and admits it."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest

from ccgw.enclave.evidence_bundle import collect_bundle
from ccgw.enclave.keys import Keyring
from ccgw.simtee import SimulatedSnpTee
from ccgw.verify.attestation.bundle import verify_bundle
from ccgw.verify.attestation.derive import cli_derive_policy, derive_policy, verify_for_pinning
from ccgw.verify.attestation.policy import load_policy, load_policy_file
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.errors import PolicyError, PolicyFileError
from tests.support.cluster import vendor
from tests.support.evidence_builders import GpuStub, SnpBuilder, nvidia_root_store

GOOD = """
version = 1
accepted_roots = ["amd-genoa", "nvidia-device"]
max_evidence_age_s = 600
allowed_measurements = ["{m}"]

[sev_snp]
min_tcb = {{ bootloader = 3, snp = 8 }}
max_vmpl = 0

[tdx]
rtmr0 = ["{m}"]
accepted_tcb_status = ["UpToDate", "SWHardeningNeeded"]

[gpu]
required = true
allowed_measurements = {{ "1" = ["{m}"] }}
""".format(m="ab" * 48)


def test_good_policy_loads() -> None:
    p = load_policy(GOOD)
    assert p.accepted_roots == {"amd-genoa", "nvidia-device"} and p.max_evidence_age_s == 600
    assert p.snp_min_tcb == {"bootloader": 3, "snp": 8} and p.snp_max_vmpl == 0
    assert p.tdx_allowed_rtmrs == {0: frozenset({"ab" * 48})}
    assert p.require_gpu and p.gpu_allowed_measurements == {1: frozenset({"ab" * 48})}
    assert not p.accepts_simulated and not p.allow_debug


def test_json_policy_loads() -> None:
    p = load_policy(json.dumps({"version": 1, "accepted_roots": ["intel-sgx"]}), "json")
    assert p.accepted_roots == {"intel-sgx"}


def test_every_problem_is_listed() -> None:
    bad = """
version = 2
accepted_roots = ["amd-milan", "acme"]
max_evidence_age_s = -1
allowed_measurements = []
allowed_platform_ids = ["zz"]
colour = "blue"
[sev_snp]
min_tcb = { bootloader = 300, fmcc = 1 }
allow_smt = "yes"
[tdx]
rtmr4 = ["00"]
accepted_tcb_status = ["Fine"]
require_collateral = true
[gpu]
allowed_measurements = { "0" = ["00"] }
"""
    with pytest.raises(PolicyFileError) as exc:
        load_policy(bad)
    p = exc.value.problems
    expected = [
        "version: must be 1",
        "accepted_roots: 'acme' is not a known root",
        "max_evidence_age_s: must be an integer",
        "allowed_measurements: is empty",
        "allowed_platform_ids: 'zz' is not hex",
        "colour: unknown key",
        "sev_snp.min_tcb.bootloader: must be an integer in 0..255",
        "sev_snp.min_tcb.fmcc: unknown key",
        "sev_snp.allow_smt: must be true or false",
        "tdx.rtmr4: unknown key",
        "tdx.accepted_tcb_status: 'Fine' is not an Intel TCB status",
        "gpu.allowed_measurements: index '0' is not 1..254",
    ]
    for e in expected:
        assert any(x.startswith(e) for x in p), (e, p)
    assert len(p) >= len(expected)


@pytest.mark.parametrize("key", ["allowed_measurements", "allowed_platform_ids", "accepted_roots"])
def test_empty_allow_list_is_refused(key: str) -> None:
    text = (
        'version = 1\naccepted_roots = ["amd-milan"]\n'
        if key != "accepted_roots"
        else "version = 1\n"
    )
    text += f"{key} = []\n"
    with pytest.raises(PolicyFileError, match=f"{key}: is empty"):
        load_policy(text)


def test_not_toml_is_refused() -> None:
    with pytest.raises(PolicyFileError, match="not valid toml"):
        load_policy("version = = 1")


def test_collateral_files_are_read_relative_to_the_policy(tmp_path: Path) -> None:
    (tmp_path / "tcb.json").write_text("{}")
    (tmp_path / "p.toml").write_text(
        'version = 1\naccepted_roots = ["intel-sgx"]\n[tdx]\ntcb_info_file = "tcb.json"\n'
        'qe_identity_file = "missing.json"\n'
    )
    with pytest.raises(PolicyFileError, match=r"tdx\.qe_identity_file: cannot read"):
        load_policy_file(tmp_path / "p.toml")


def test_simulated_root_only_when_named() -> None:
    p = load_policy('version = 1\naccepted_roots = ["amd-milan", "simulated"]\n')
    assert p.accepts_simulated


def test_derived_policy_admits_the_worker_and_refuses_another_image() -> None:
    cpu = SnpBuilder("genoa", version=3)
    roots = nvidia_root_store(cpu.vendor.root_store())
    nonce = os.urandom(32)
    b = collect_bundle(
        cpu=cpu,
        gpu=GpuStub(),
        keys=Keyring().public,
        nonce=nonce,
        models={},
        issued_at_ms=int(time.time() * 1000),
    )
    w = verify_for_pinning(b, roots, simulated=False)
    text = derive_policy(w, pin_platform=True)
    policy = load_policy(text)
    assert policy.allowed_measurements == {cpu.measurement.hex()}
    assert policy.allowed_platform_ids == {cpu.chip_id.hex()}
    now = dt.datetime.now(dt.UTC)
    verify_bundle(b, policy, roots, now)
    cpu.measurement = os.urandom(48)  # another image on the same machine
    other = collect_bundle(
        cpu=cpu,
        gpu=GpuStub(),
        keys=Keyring().public,
        nonce=nonce,
        models={},
        issued_at_ms=int(time.time() * 1000),
    )
    with pytest.raises(PolicyError) as exc:
        verify_bundle(other, policy, roots, now)
    assert any("launch measurement" in p for p in exc.value.problems)
    assert any("GPU 0 measurement" in p for p in exc.value.problems)


def test_cli_derive_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v = vendor()
    b = collect_bundle(
        cpu=SimulatedSnpTee(v),
        gpu=None,
        keys=Keyring().public,
        nonce=os.urandom(32),
        models={},
        issued_at_ms=int(time.time() * 1000),
    )
    (tmp_path / "b.bin").write_bytes(b.SerializeToString())
    (tmp_path / "root.pem").write_bytes(v.root_pem())
    assert cli_derive_policy([str(tmp_path / "b.bin")]) == 2
    assert "not an accepted root" in capsys.readouterr().err
    out = tmp_path / "p.toml"
    rc = cli_derive_policy(
        [
            str(tmp_path / "b.bin"),
            "-o",
            str(out),
            "--allow-simulated-tee",
            str(tmp_path / "root.pem"),
        ]
    )
    assert rc == 0 and "SIMULATED" in capsys.readouterr().err
    policy = load_policy_file(out)
    assert policy.accepted_roots == {"simulated"}
    roots = RootStore.default().with_simulated(v.root_pem())
    verify_bundle(b, policy, roots, dt.datetime.now(dt.UTC))
