"""Real-mode evidence collection against fake hardware: configfs-tsm (entry lifecycle, generation
race, SEV certificate table, TDX), NVML (CC-mode refusals with exact messages), detect_real_tee, and
a full collect → verify round trip through both."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest
from cryptography.hazmat.primitives import serialization

from ccgw.enclave.errors import EvidenceError
from ccgw.enclave.evidence import ConfigfsTsm, NvmlGpuAttester, detect_real_tee
from ccgw.enclave.evidence.configfs import parse_sev_cert_table
from ccgw.enclave.evidence_bundle import collect_bundle
from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify.attestation.bundle import verify_bundle
from ccgw.verify.attestation.policy import Policy
from tests.support.evidence_builders import GpuStub, SnpBuilder, nvidia_root_store
from tests.support.fake_hw import GUID_ARK, GUID_ASK, GUID_VCEK, FakeTsm, cert_table, fake_pynvml


def snp_tsm(b: SnpBuilder) -> FakeTsm:
    der = lambda c: c.public_bytes(serialization.Encoding.DER)  # noqa: E731
    aux = cert_table(
        {GUID_VCEK: der(b.cert), GUID_ASK: der(b.vendor.ask), GUID_ARK: der(b.vendor.ark)}
    )
    return FakeTsm("sev_guest", b.report, aux)


def test_configfs_sev_snp_round_trip_verifies() -> None:
    b = SnpBuilder("genoa", version=3)
    tsm = snp_tsm(b)
    cpu = ConfigfsTsm(tsm, tsm.root)
    assert cpu.name == "sev-snp"
    gpu_hw = GpuStub()
    gpu = NvmlGpuAttester(fake_pynvml(attester=gpu_hw))
    nonce = os.urandom(32)
    bundle = collect_bundle(
        cpu=cpu,
        gpu=gpu,
        keys=Keyring().public,
        nonce=nonce,
        models={},
        issued_at_ms=int(time.time() * 1000),
    )
    assert len(bundle.cpu_certs) == 3 and bundle.gpus[0].arch == "HOPPER"
    w = verify_bundle(
        bundle,
        Policy(require_gpu=True),
        nvidia_root_store(b.vendor.root_store()),
        dt.datetime.now(dt.UTC),
        expected_nonce=nonce,
    )
    assert w.product == "genoa" and w.gpu_count == 1
    assert not tsm.entries and len(tsm.removed) == 2  # probe + attest, both cleaned up


def test_configfs_racing_writer_is_detected() -> None:
    b = SnpBuilder("milan")
    tsm = snp_tsm(b)
    cpu = ConfigfsTsm(tsm, tsm.root, attempts_max=2)

    def racer(t: FakeTsm, entry: str) -> None:
        t.entries[entry]["inblob"] = bytes(64)  # someone else's report_data
        t.entries[entry]["generation"] += 1

    tsm.racer = racer
    with pytest.raises(
        EvidenceError, match=r"another process wrote to the report entry.*2 attempts"
    ):
        cpu.attest(os.urandom(64))
    assert not tsm.entries


def test_configfs_race_once_is_retried() -> None:
    b = SnpBuilder("milan")
    tsm = snp_tsm(b)
    cpu = ConfigfsTsm(tsm, tsm.root)
    calls = []

    def racer(t: FakeTsm, entry: str) -> None:
        if not calls:
            calls.append(entry)
            t.entries[entry]["generation"] += 1

    tsm.racer = racer
    ev = cpu.attest(b"\x05" * 64)
    assert ev.report[0x50:0x90] == b"\x05" * 64 and len(calls) == 1


def test_configfs_tdx_has_no_certs() -> None:
    tsm = FakeTsm("tdx_guest", lambda inblob: b"QUOTE" + inblob)
    cpu = ConfigfsTsm(tsm, tsm.root)
    ev = cpu.attest(b"\x01" * 64)
    assert (cpu.name, ev.platform, ev.certs) == ("tdx", pb.TDX, ())


def test_configfs_missing_is_named() -> None:
    tsm = FakeTsm("sev_guest", lambda i: i, root="/tsm/report")
    with pytest.raises(EvidenceError, match="no CPU TEE: /nope does not exist"):
        ConfigfsTsm(tsm, "/nope")


def test_unknown_provider_is_refused() -> None:
    tsm = FakeTsm("arm_cca_guest", lambda i: i)
    with pytest.raises(EvidenceError, match="provider 'arm_cca_guest'"):
        ConfigfsTsm(tsm, tsm.root)


def test_cert_table_parsing() -> None:
    table = cert_table({GUID_ASK: b"ask", GUID_VCEK: b"vcek", GUID_ARK: b"ark"})
    assert parse_sev_cert_table(table) == (b"vcek", b"ask", b"ark")
    with pytest.raises(EvidenceError, match="truncated"):
        parse_sev_cert_table(table[:20])
    with pytest.raises(EvidenceError, match="points outside the table"):
        parse_sev_cert_table(table[:30])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cc_on": False}, "GPU 0: confidential computing is OFF"),
        ({"capable": False}, "GPU 0: not confidential-computing capable"),
        ({"devtools": True}, "GPU 0: confidential computing is in DEVTOOLS mode"),
        ({"gpus": 0}, "no NVIDIA GPU is visible"),
        ({"init_fails": True}, "NVML cannot be initialised"),
    ],
)
def test_detect_real_tee_names_what_is_missing(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    b = SnpBuilder("milan")
    tsm = snp_tsm(b)
    with pytest.raises(EvidenceError, match=message) as exc:
        detect_real_tee(fs=tsm, tsm_root=tsm.root, nvml=fake_pynvml(**kwargs))
    assert "--simulated-tee" in str(exc.value)


def test_detect_real_tee_lists_cpu_and_gpu_problems_together() -> None:
    tsm = FakeTsm("sev_guest", lambda i: i)
    with pytest.raises(EvidenceError) as exc:
        detect_real_tee(fs=tsm, tsm_root="/absent", nvml=fake_pynvml(cc_on=False, gpus=2))
    msg = str(exc.value)
    assert "no CPU TEE" in msg and "GPU 0: confidential computing is OFF" in msg
    assert "GPU 1: confidential computing is OFF" in msg


def test_detect_real_tee_success() -> None:
    b = SnpBuilder("milan")
    tsm = snp_tsm(b)
    cpu, gpu = detect_real_tee(fs=tsm, tsm_root=tsm.root, nvml=fake_pynvml(attester=GpuStub()))
    assert cpu.name == "sev-snp" and gpu is not None
    _cpu2, gpu2 = detect_real_tee(fs=tsm, tsm_root=tsm.root, require_gpu=False)
    assert gpu2 is None


def test_gpu_report_without_our_nonce_is_refused() -> None:
    stub = GpuStub()

    class Wrong:
        chain = stub.chain

        def attest(self, nonce: bytes) -> list[pb.GpuEvidence]:
            return stub.attest(os.urandom(32))

    gpu = NvmlGpuAttester(fake_pynvml(attester=Wrong()))
    with pytest.raises(EvidenceError, match="GPU 0: attestation report does not carry our nonce"):
        gpu.attest(os.urandom(32))
