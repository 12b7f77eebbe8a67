"""verify_bundle over spec-built evidence: the GPU binding (splicing refused both ways), the
validate layer listing every problem, and the simulated root still gated by the policy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time

import pytest

from ccgw.enclave.evidence_bundle import collect_bundle
from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import binding
from ccgw.verify.attestation.bundle import verify_bundle
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.errors import BindingError, FreshnessError, PolicyError
from tests.support.evidence_builders import GpuStub, SnpBuilder, nvidia_root_store


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make(cpu: SnpBuilder, gpu: GpuStub | None, nonce: bytes) -> pb.EvidenceBundle:
    return collect_bundle(
        cpu=cpu,
        gpu=gpu,
        keys=Keyring().public,
        nonce=nonce,
        models={"m": b"\x02" * 32},
        issued_at_ms=int(time.time() * 1000),
    )


@pytest.fixture(scope="module")
def cpu() -> SnpBuilder:
    return SnpBuilder("genoa", version=3)


def roots(cpu: SnpBuilder):  # type: ignore[no-untyped-def]
    return nvidia_root_store(cpu.vendor.root_store())


POLICY = Policy(require_gpu=True)


def test_cpu_and_gpu_bundle_verifies(cpu: SnpBuilder) -> None:
    nonce = os.urandom(32)
    gpu = GpuStub()
    w = verify_bundle(make(cpu, gpu, nonce), POLICY, roots(cpu), now(), expected_nonce=nonce)
    assert (w.platform, w.product, w.gpu_count, w.simulated) == ("sev-snp", "genoa", 1, False)
    assert w.tcb == {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
    assert w.gpus[0].measurements[1] == gpu.measurements[1].hex()


def test_gpu_evidence_spliced_from_another_bundle_is_refused(cpu: SnpBuilder) -> None:
    nonce = os.urandom(32)
    a = make(cpu, GpuStub(), nonce)
    b = make(
        cpu, GpuStub(), nonce
    )  # another GPU, same nonce: only the CPU binding tells them apart
    del a.gpus[:]
    a.gpus.extend(b.gpus)
    with pytest.raises(BindingError, match="GPU evidence"):
        verify_bundle(a, POLICY, roots(cpu), now())


def test_cpu_quote_over_different_gpu_evidence_is_refused(cpu: SnpBuilder) -> None:
    nonce = os.urandom(32)
    mine, other = GpuStub(), GpuStub()
    b = make(cpu, mine, nonce)
    # the CPU report commits to other GPU evidence than the bundle carries
    wrong = binding.report_data(
        b.keys, nonce, binding.gpu_evidence_sha256(other.attest(nonce)), b.models, b.issued_at_ms
    )
    b.cpu_report = cpu.report(wrong)
    with pytest.raises(BindingError):
        verify_bundle(b, POLICY, roots(cpu), now())


def test_gpu_report_for_another_nonce_is_refused(cpu: SnpBuilder) -> None:
    nonce = os.urandom(32)
    gpu = GpuStub()

    class Stale:
        def attest(self, _nonce: bytes) -> list[pb.GpuEvidence]:
            return gpu.attest(os.urandom(32))

    b = collect_bundle(
        cpu=cpu,
        gpu=Stale(),
        keys=Keyring().public,
        nonce=nonce,
        models={},
        issued_at_ms=int(time.time() * 1000),
    )
    with pytest.raises(FreshnessError, match="GPU 0 attestation report answers another nonce"):
        verify_bundle(b, POLICY, roots(cpu), now())


def test_gpu_required_but_absent(cpu: SnpBuilder) -> None:
    with pytest.raises(PolicyError, match="GPU in confidential-computing mode"):
        verify_bundle(make(cpu, None, os.urandom(32)), POLICY, roots(cpu), now())


def test_every_problem_is_listed() -> None:
    b = SnpBuilder("turin", version=5)
    b.policy |= 1 << 19 | 1 << 18  # debug, migration agent
    b.vmpl = 2
    pol = Policy(
        allowed_measurements=frozenset({"11" * 48}),
        allowed_platform_ids=frozenset({"22" * 64}),
        snp_min_tcb={"fmc": 2, "snp": 30, "microcode": 1},
        snp_min_guest_svn=5,
        snp_allow_smt=False,
        snp_max_vmpl=0,
        snp_allowed_host_data=frozenset({"33" * 32}),
    )
    with pytest.raises(PolicyError) as exc:
        verify_bundle(make(b, None, os.urandom(32)), pol, b.vendor.root_store(), now())
    p = exc.value.problems
    assert len(p) == 10, p
    assert "guest policy allows debugging" in p
    assert "reported TCB fmc SVN 1 is below the minimum 2" in p
    assert "reported TCB snp SVN 22 is below the minimum 30" in p
    assert "guest policy allows a migration agent" in p
    assert "report is from VMPL 2; the policy allows at most 0" in p
    assert any(s.startswith("platform ") and "registered" in s for s in p)


def test_allowed_values_pass() -> None:
    b = SnpBuilder("milan", version=2)
    bundle = make(b, None, os.urandom(32))
    pol = Policy(
        allowed_measurements=frozenset({b.measurement.hex()}),
        allowed_platform_ids=frozenset({b.chip_id.hex()}),
        snp_min_tcb={"bootloader": 3, "snp": 8, "fmc": 9},  # fmc ignored off Turin
        snp_max_vmpl=0,
    )
    w = verify_bundle(bundle, pol, b.vendor.root_store(), now())
    assert w.platform_id == b.chip_id.hex()
    assert dataclasses.replace(pol, snp_allow_smt=False) != pol
    with pytest.raises(PolicyError, match="SMT is enabled"):
        verify_bundle(
            bundle, dataclasses.replace(pol, snp_allow_smt=False), b.vendor.root_store(), now()
        )
