"""The attestation report over real evidence: every check is listed with its status; real
collateral (Intel CRLs, TCB info, QE identity; NVIDIA RIMs) passes or fails as it should; skips show
as skips and an enforcing policy turns them into refusals."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from ccgw.enclave.evidence_bundle import collect_bundle
from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify.attestation import rim
from ccgw.verify.attestation.bundle import verify_bundle
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.report import CHECKS, AttestationReport, Status, Tier
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.attestation.supplied import Collateral
from ccgw.verify.errors import BindingError, PolicyError, VerifyError
from tests.support.evidence_builders import SnpBuilder
from tests.vectors._paths import vectors_dir

SPR_WHEN = dt.datetime(2023, 7, 1, 1, tzinfo=dt.UTC)
GPU_WHEN = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)  # RIM signer valid 2023-06-27 – 2025-06-26


def tdx(name: str) -> bytes:
    return (vectors_dir() / "tdx" / name).read_bytes()


def nv(name: str) -> bytes:
    return (vectors_dir() / "nvidia-gpu" / name).read_bytes()


def refused(fn: object, *args: object, **kw: object) -> tuple[VerifyError, AttestationReport]:
    with pytest.raises(VerifyError) as exc:
        fn(*args, **kw)  # type: ignore[operator]
    assert isinstance(exc.value.report, AttestationReport)
    return exc.value, exc.value.report


def spr_bundle() -> pb.EvidenceBundle:
    return pb.EvidenceBundle(
        version=1,
        platform=pb.TDX,
        cpu_report=tdx("tdx_prod_quote_SPR_E4.dat"),
        keys=Keyring().public,
        nonce=bytes(32),
        issued_at_ms=int(SPR_WHEN.timestamp() * 1000),
    )


INTEL = Collateral(
    crls=(tdx("pckcrl"), tdx("rootcrl.der")),
    tdx_tcb_infos=(tdx("sample_tcbInfo_response"),),
    tdx_qe_identities=(tdx("sample_qeIdentity_response"),),
    intel_signing_chains=(tdx("tcb_info_issuer_chain.pem"),),
    sources=("vectors",),
)


def test_real_tdx_quote_report_lists_every_check() -> None:
    exc, rep = refused(
        verify_bundle, spr_bundle(), Policy(), RootStore.default(), SPR_WHEN, collateral=INTEL
    )
    assert [c.id for c in rep.checks] == [c.id for c in CHECKS]
    assert {c.spec.tier for c in rep.checks} == set(Tier)
    s = {c.id: c.status for c in rep.checks}
    for cid in ("cpu.report", "cpu.chain", "cpu.signature", "cpu.debug", "cpu.revocation"):
        assert s[cid] is Status.PASS, (cid, rep.check(cid))
    assert "good" in rep.check("cpu.revocation").seen  # PCK (Platform CA CRL), CA (Root CA CRL)
    # real Intel collateral, verified to the TCB signing chain: this SPR E4 is below every level
    assert s["cpu.collateral"] is Status.FAIL
    assert "below every level" in rep.check("cpu.collateral").detail[0]
    # the quote's report_data was not made for our keys
    assert s["binding.keys"] is Status.FAIL and isinstance(exc, BindingError)
    assert s["release.inclusion"] is Status.SKIP and s["evidence.nonce"] is Status.SKIP
    assert not rep.trusted and rep.score[1] == len(CHECKS)
    assert json.loads(rep.to_json())["checks"][2]["id"] == "cpu.report"
    text = rep.render()
    assert "[hardware]" in text and "[supply chain]" in text and "REFUSED" in text


def test_real_tdx_revocation_and_collateral_skip_without_collateral() -> None:
    _, rep = refused(verify_bundle, spr_bundle(), Policy(), RootStore.default(), SPR_WHEN)
    assert rep.check("cpu.revocation").status is Status.SKIP
    assert "no CRL from Intel SGX PCK Platform CA" in rep.check("cpu.revocation").detail[0]
    assert rep.check("cpu.collateral").status is Status.SKIP
    assert not rep.check("cpu.revocation").enforced


def test_stale_crls_are_a_skip_not_a_pass() -> None:
    later = SPR_WHEN + dt.timedelta(days=400)  # the PCK CRL and Root CA CRL have expired
    _, rep = refused(
        verify_bundle, spr_bundle(), Policy(), RootStore.default(), later, collateral=INTEL
    )
    rev = rep.check("cpu.revocation")
    assert rev.status is Status.SKIP and "expired" in rev.detail[0]


def test_enforcing_policy_turns_the_skips_into_refusals() -> None:
    pol = Policy(enforce=frozenset({"cpu.revocation", "cpu.collateral"}))
    _, rep = refused(verify_bundle, spr_bundle(), pol, RootStore.default(), SPR_WHEN)
    assert rep.check("cpu.revocation").refuses and rep.check("cpu.collateral").refuses
    assert {c.id for c in rep.refusals} >= {"cpu.revocation", "cpu.collateral", "binding.keys"}


# --- GPU: the real H100 reports with a CPU whose report_data we control ---------------------------


def gpu_bundle(report_hex: bytes, chain: bytes) -> pb.EvidenceBundle:
    report = bytes.fromhex(report_hex.decode().strip())

    class RealGpu:
        def attest(self, nonce: bytes) -> list[pb.GpuEvidence]:
            return [pb.GpuEvidence(index=0, arch="HOPPER", report=report, cert_chain=chain)]

    return collect_bundle(
        cpu=SnpBuilder("genoa", version=3),
        gpu=RealGpu(),
        keys=Keyring().public,
        nonce=report[4:36],
        models={"m": b"\x01" * 32},
        issued_at_ms=int(GPU_WHEN.timestamp() * 1000),
    )


def gpu_roots(cpu_bundle: pb.EvidenceBundle) -> RootStore:
    base = RootStore.default()
    from tests.support.evidence_builders import amd

    return RootStore({**base.roots, **amd("genoa").root_store().roots})


RIMS = (nv("Driver_RIM_test_no_gpu.swidtag"), nv("1010_0200_882_96005E0001_test_no_gpu.swidtag"))
RIM_POLICY = Policy(require_gpu=True, gpu_rims=RIMS)


def test_real_gpu_measurements_match_nvidias_rims() -> None:
    b = gpu_bundle(nv("attestationReport.txt"), nv("gpuAkCertChain.txt"))
    w = verify_bundle(b, RIM_POLICY, gpu_roots(b), GPU_WHEN, expected_nonce=b.nonce)
    rep = w.report
    assert rep is not None and rep.trusted
    for cid in ("gpu.report", "gpu.chain", "gpu.signature", "gpu.nonce", "gpu.cc_mode"):
        assert rep.check(cid).status is Status.PASS, cid
    assert rep.check("gpu.measurements").status is Status.PASS
    assert rep.check("gpu.measurements").enforced
    assert rep.check("binding.cpu_gpu").status is Status.PASS
    assert rep.check("evidence.nonce").status is Status.PASS
    rev = rep.check("gpu.revocation")
    assert rev.status is Status.SKIP  # no NVIDIA CRL or OCSP response supplied
    # The signers of the two RIMs used are checked too (they name NVIDIA's OCSP responder).
    assert "HCC RIM L4 Signer: unchecked (no OCSP response supplied)" in rev.seen
    assert "NVIDIA GH100 Identity: unchecked" in rev.seen


def test_real_gpu_with_other_firmware_fails_the_rims() -> None:
    b = gpu_bundle(nv("hopperAttestationReport.txt"), nv("hopperCertChain.txt"))
    exc, rep = refused(verify_bundle, b, RIM_POLICY, gpu_roots(b), GPU_WHEN)
    assert isinstance(exc, PolicyError)
    m = rep.check("gpu.measurements")
    assert m.status is Status.FAIL
    assert "GPU 0: no valid RIM for driver 550.90.07" in m.detail
    assert "GPU 0: no valid RIM for VBIOS 96.00.9F.00.01" in m.detail


def test_real_rims_compared_with_another_report_name_each_difference() -> None:
    root = RootStore.default().rim_root()
    assert root is not None
    drv, vb = (rim.verify_rim(r, root, GPU_WHEN) for r in RIMS)
    from ccgw.verify.attestation import nvidia

    other = nvidia.parse_report(bytes.fromhex(nv("hopperAttestationReport.txt").decode().strip()))
    problems = rim.compare(other, drv, vb)
    assert problems[0] == "driver RIM is for 545.00, the GPU runs 550.90.07"
    assert any("measurement 1 (HashedMeasurement_1_FSP) differs" in p for p in problems)


def test_rim_signature_and_chain_failures() -> None:
    root = RootStore.default().rim_root()
    assert root is not None
    with pytest.raises(VerifyError, match="signing chain is not valid"):
        rim.verify_rim(RIMS[0], root, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    tampered = RIMS[0].replace(b'index="21" active="True"', b'index="21" active="False"')
    with pytest.raises(VerifyError, match="XML signature does not verify"):
        rim.verify_rim(tampered, root, GPU_WHEN)
    with pytest.raises(VerifyError, match=r"does not verify|not issued|not an accepted root"):
        rim.verify_rim(RIMS[0], RootStore.default().roots["nvidia-device"].cert, GPU_WHEN)
    with pytest.raises(VerifyError, match=r"not well-formed|DTD|SoftwareIdentity"):
        rim.verify_rim(b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', root, GPU_WHEN)


def test_unsigned_gpu_policy_values_still_apply_without_rims() -> None:
    b = gpu_bundle(nv("attestationReport.txt"), nv("gpuAkCertChain.txt"))
    pol = Policy(require_gpu=True, gpu_allowed_driver_versions=frozenset({"550.90.07"}))
    _, rep = refused(verify_bundle, b, pol, gpu_roots(b), GPU_WHEN)
    assert rep.check("gpu.measurements").detail == ("GPU 0 driver 545.00 is not allowed",)
    nonce = os.urandom(32)
    _, rep = refused(verify_bundle, b, Policy(), gpu_roots(b), GPU_WHEN, expected_nonce=nonce)
    assert rep.check("evidence.nonce").status is Status.FAIL
