"""Azure's paravisor (HCL) envelope: parsed field by field (a published envelope and built ones),
REPORT_DATA must commit to the runtime claims, the guest's user-data binds the worker's keys, and
the policy must accept the paravisor explicitly (cpu.paravisor), never silently."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import time

import pytest

from ccgw.enclave.evidence_bundle import collect_bundle
from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import limits
from ccgw.verify.attestation import azure_hcl, sevsnp
from ccgw.verify.attestation.bundle import verify_bundle
from ccgw.verify.attestation.policy import Policy, load_policy_file
from ccgw.verify.attestation.report import Status
from ccgw.verify.errors import BindingError, LimitError, MalformedError, PolicyError, VerifyError
from tests.support.evidence_builders import (
    AzureHclTee,
    SnpBuilder,
    hcl_envelope,
    runtime_claims,
)
from tests.vectors._paths import vectors_dir

ALLOW = Policy(snp_allow_azure_paravisor=True)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def snp() -> SnpBuilder:
    return SnpBuilder("genoa", version=3)


def bundle(tee: object) -> pb.EvidenceBundle:
    return collect_bundle(
        cpu=tee,  # type: ignore[arg-type]
        gpu=None,
        keys=Keyring().public,
        nonce=os.urandom(32),
        models={"m": b"\x02" * 32},
        issued_at_ms=int(time.time() * 1000),
    )


# -- the published envelope ------------------------------------------------------------------


def test_published_envelope_parses_field_by_field() -> None:
    raw = (vectors_dir() / "azure" / "hcl_report_snp.bin").read_bytes()
    env = azure_hcl.parse_envelope(raw)
    assert (env.header_version, env.report_size, env.report_type, env.hash_name) == (
        1,
        1819,
        2,
        "sha256",
    )
    assert env.snp_report == raw[32 : 32 + 1184]
    claims = azure_hcl.parse_runtime_claims(env.runtime_claims)
    assert [k["kid"] for k in claims["keys"]] == ["HCLAkPub"]
    assert claims["vm-configuration"]["secure-boot"] is True
    # 2022: no user-data in the claims yet, so nothing could bind a worker's keys.
    with pytest.raises(BindingError, match="no user-data"):
        env.user_data()
    # Its inner report is version 1 (firmware of 2022): every field parses as that version does.
    rep = sevsnp.parse_report(env.snp_report)
    assert (rep.version, rep.vmpl, rep.signing_key, rep.debug_allowed) == (1, 0, "vcek", False)
    assert rep.reported_tcb.components() == {"bootloader": 2, "tee": 0, "snp": 2, "microcode": 55}
    assert rep.committed_tcb.raw == 0 and rep.launch_tcb.raw == 0
    bad = bytearray(env.snp_report)
    bad[0x1F0] = 1  # a field version 1 does not define
    with pytest.raises(MalformedError, match="version 1"):
        sevsnp.parse_report(bytes(bad))
    # The published fixture's REPORT_DATA is not the hash of the claims it carries: detected.
    with pytest.raises(BindingError, match="runtime claims"):
        env.check_report_data(env.snp_report[0x50:0x90])


# -- built envelopes through verify_bundle -----------------------------------------------------


def test_wrapped_report_verifies_when_the_policy_accepts_the_paravisor(snp: SnpBuilder) -> None:
    w = verify_bundle(bundle(AzureHclTee(snp)), ALLOW, snp.vendor.root_store(), now())
    assert w.platform == "sev-snp" and w.measurement == snp.measurement.hex()
    assert w.report is not None
    check = w.report.check("cpu.paravisor")
    assert check.status is Status.SKIP and not check.enforced
    assert "paravisor" in check.detail[0]
    assert w.report.check("binding.keys").status is Status.PASS
    assert "HCL" in w.report.check("cpu.report").seen


def test_default_policy_refuses_the_paravisor_by_name(snp: SnpBuilder) -> None:
    with pytest.raises(PolicyError, match="paravisor") as info:
        verify_bundle(bundle(AzureHclTee(snp)), Policy(), snp.vendor.root_store(), now())
    rep = info.value.report
    assert rep is not None and rep.check("cpu.paravisor").enforced
    # Everything else about the evidence verified: the refusal is the paravisor alone.
    assert rep.check("cpu.signature").status is Status.PASS
    assert rep.check("binding.keys").status is Status.PASS


def test_direct_report_passes_the_paravisor_check(snp: SnpBuilder) -> None:
    w = verify_bundle(bundle(snp), Policy(), snp.vendor.root_store(), now())
    assert w.report is not None and w.report.check("cpu.paravisor").status is Status.PASS


class _Tampered(AzureHclTee):
    def __init__(self, snp: SnpBuilder, mutate: str) -> None:
        super().__init__(snp)
        self.mutate = mutate

    def attest(self, report_data: bytes):  # type: ignore[no-untyped-def]
        ev = super().attest(report_data)
        env = azure_hcl.parse_envelope(ev.report)
        claims = env.runtime_claims
        inner = env.snp_report
        if self.mutate == "claims-after-signing":
            doc = json.loads(claims)
            doc["vm-configuration"]["console-enabled"] = True
            claims = json.dumps(doc, separators=(",", ":")).encode()
        elif self.mutate == "other-user-data":
            claims = runtime_claims(os.urandom(64))
            inner = self.snp.report(hashlib.sha256(claims).digest() + bytes(32))
        elif self.mutate == "no-user-data":
            claims = runtime_claims(None)
            inner = self.snp.report(hashlib.sha256(claims).digest() + bytes(32))
        elif self.mutate == "report-data-is-user-data":  # REPORT_DATA = keys, claims ignored
            inner = self.snp.report(report_data)
        elif self.mutate == "sha384-declared":
            return dataclasses.replace(ev, report=hcl_envelope(inner, claims, hash_type=2))
        return dataclasses.replace(ev, report=hcl_envelope(inner, claims))


@pytest.mark.parametrize(
    "mutate",
    [
        "claims-after-signing",
        "other-user-data",
        "no-user-data",
        "report-data-is-user-data",
        "sha384-declared",
    ],
)
def test_every_break_in_the_binding_is_refused(snp: SnpBuilder, mutate: str) -> None:
    with pytest.raises(BindingError) as info:
        verify_bundle(bundle(_Tampered(snp, mutate)), ALLOW, snp.vendor.root_store(), now())
    assert info.value.report is not None
    assert info.value.report.check("binding.keys").status is Status.FAIL


def test_a_bit_flipped_inside_the_wrapped_report_breaks_its_signature(snp: SnpBuilder) -> None:
    b = bundle(AzureHclTee(snp))
    raw = bytearray(b.cpu_report)
    raw[32 + 0x90] ^= 1  # MEASUREMENT
    b.cpu_report = bytes(raw)
    with pytest.raises(VerifyError) as info:
        verify_bundle(b, ALLOW, snp.vendor.root_store(), now())
    assert info.value.report is not None
    assert info.value.report.check("cpu.signature").status is Status.FAIL


# -- hostile envelopes: each field checked, one named error ------------------------------------

CLAIMS = runtime_claims(bytes(64))
REPORT = bytes(1184)


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (hcl_envelope(REPORT, CLAIMS)[:1235], MalformedError, "fixed part"),
        (b"HCLB" + hcl_envelope(REPORT, CLAIMS)[4:], MalformedError, "signature"),
        (hcl_envelope(REPORT, CLAIMS, version=9), MalformedError, "header version"),
        (hcl_envelope(REPORT, CLAIMS, report_type=4), MalformedError, "TDREPORT"),
        (hcl_envelope(REPORT, CLAIMS, report_type=7), MalformedError, "report type 7"),
        (hcl_envelope(REPORT, CLAIMS, hash_type=0), MalformedError, "hash type 0"),
        (hcl_envelope(REPORT, CLAIMS, report_size=5), MalformedError, "report size"),
        (hcl_envelope(REPORT, CLAIMS, data_size=999), MalformedError, "request data size"),
        (hcl_envelope(REPORT, CLAIMS)[:-10], MalformedError, "past the end"),
        (
            hcl_envelope(REPORT, b"{" * (limits.HCL_RUNTIME_CLAIMS_BYTES_MAX + 1)),
            LimitError,
            "exceed",
        ),
        (bytes(limits.CPU_REPORT_BYTES_MAX + 1), LimitError, "size limit"),
    ],
)
def test_hostile_envelope_fields(raw: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        azure_hcl.parse_envelope(raw)


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        (b'{"user-data":"00","user-data":"11"}', "repeats"),
        (b"[1,2]", "not a JSON object"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 5000 + b"]" * 5000, "not JSON"),
    ],
)
def test_hostile_runtime_claims(claims: bytes, match: str) -> None:
    with pytest.raises(MalformedError, match=match):
        azure_hcl.parse_runtime_claims(claims)


def test_user_data_must_be_64_bytes_of_hex() -> None:
    for bad in ('"ABCD"', '"' + "zz" * 64 + '"', "12"):
        env = azure_hcl.parse_envelope(hcl_envelope(REPORT, b'{"user-data":' + bad.encode() + b"}"))
        with pytest.raises(MalformedError, match="user-data"):
            env.user_data()


def test_policy_file_accepts_the_paravisor_only_when_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "p.toml"
    head = 'version = 1\naccepted_roots = ["amd-genoa"]\n'
    p.write_text(head + "[sev_snp]\nallow_azure_paravisor = true\n")
    assert load_policy_file(p).snp_allow_azure_paravisor
    p.write_text(head)
    assert not load_policy_file(p).snp_allow_azure_paravisor
    assert Policy().enforces("cpu.paravisor") and not ALLOW.enforces("cpu.paravisor")
