"""The real H100 attestation report (nvtrust's hopperAttestationReport.txt + hopperCertChain.txt)
verifies to the pinned NVIDIA Device Identity CA; tampers fail naming what failed; a bundle that
carries it verifies only when the CPU evidence commits to it."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ccgw.enclave.evidence_bundle import collect_bundle
from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.simtee import SimulatedSnpTee
from ccgw.verify.attestation import nvidia
from ccgw.verify.attestation.bundle import verify_bundle
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.errors import (
    ChainError,
    FreshnessError,
    MalformedError,
    PolicyError,
    SignatureError,
)
from tests.support.cluster import vendor
from tests.vectors._paths import vectors_dir

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def load() -> tuple[bytes, bytes]:
    d = vectors_dir() / "nvidia-gpu"
    report = bytes.fromhex((d / "hopperAttestationReport.txt").read_text().strip())
    return report, (d / "hopperCertChain.txt").read_bytes()


def verify(report: bytes, chain: bytes, nonce: bytes | None = None) -> nvidia.VerifiedGpu:
    roots = RootStore.default().for_platform(frozenset({"nvidia-device"}), "nvidia")
    return nvidia.verify_report(report, chain, roots, NOW, report[4:36] if nonce is None else nonce)


def flip(data: bytes, offset: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 0x01
    return bytes(b)


def test_real_h100_report_verifies() -> None:
    report, chain = load()
    g = verify(report, chain)
    assert g.root.name == "nvidia-device"
    assert len(g.measurements) == 64 and all(len(v) == 96 for v in g.measurements.values())
    assert g.report.driver_version == "550.90.07"
    assert g.report.vbios_version == "96.00.9F.00.01"
    assert g.report.fwid == nvidia.cert_fwid(g.leaf)
    assert g.report.nonce.hex().startswith("931d8dd0add203ac")


def test_pinned_root_equals_the_vector_root() -> None:
    d = vectors_dir() / "nvidia-gpu"
    pinned = RootStore.default().roots["nvidia-device"].cert
    assert pinned == x509.load_pem_x509_certificate((d / "verifier_device_root.pem").read_bytes())


def test_chain_without_the_root_still_verifies() -> None:
    report, chain = load()
    certs = x509.load_pem_x509_certificates(chain)[:-1]
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    assert verify(report, pem).root.name == "nvidia-device"


def test_another_nonce_is_refused() -> None:
    report, chain = load()
    with pytest.raises(FreshnessError, match="GPU 0 attestation report answers another nonce"):
        verify(report, chain, os.urandom(32))


MEAS0 = 37 + 8  # first measurement block


@pytest.mark.parametrize(
    ("what", "offset"),
    [
        ("request nonce", 10),
        ("measurement 1 value", MEAS0 + 7 + 5),
        ("measurement 64 value", MEAS0 + 64 * 55 - 3),
        ("responder nonce", 37 + 8 + 3520 + 4),
        ("opaque driver version", 37 + 8 + 3520 + 34 + 30),
        ("signature r", 4117 - 96 + 4),
        ("signature s", 4117 - 10),
    ],
)
def test_signed_field_tamper_fails_the_signature(what: str, offset: int) -> None:
    report, chain = load()
    bad = flip(report, offset)
    with pytest.raises(SignatureError, match="GPU attestation report signature does not verify"):
        verify(bad, chain, bad[4:36])


@pytest.mark.parametrize(
    ("what", "offset", "named"),
    [
        ("request code", 1, "GET_MEASUREMENTS"),
        ("response code", 38, "MEASUREMENTS"),
        ("SPDM version", 0, "SPDM version"),
        ("block count", 37 + 4, "measurement blocks"),
        ("record length", 37 + 5, "length|truncated|sizes|past"),
        ("block spec", MEAS0 + 1, "not a DMTF measurement"),
        ("block size", MEAS0 + 2, "inconsistent sizes|truncated|not a DMTF"),
    ],
)
def test_structural_tamper_is_malformed(what: str, offset: int, named: str) -> None:
    report, chain = load()
    with pytest.raises(MalformedError, match=named):
        verify(flip(report, offset), chain)


def test_truncated_report_is_malformed() -> None:
    report, chain = load()
    with pytest.raises(MalformedError):
        verify(report[:-1], chain)


def _blocks(chain: bytes) -> list[bytes]:
    certs = x509.load_pem_x509_certificates(chain)
    return [c.public_bytes(serialization.Encoding.PEM) for c in certs]


def test_chain_with_a_ca_first_is_refused() -> None:
    report, chain = load()
    b = _blocks(chain)
    with pytest.raises(ChainError, match="is a CA, not an end entity"):
        verify(report, b"".join([b[1], b[0], *b[2:]]))


def test_intermediates_in_any_order_build_the_same_path() -> None:
    report, chain = load()
    b = _blocks(chain)
    assert verify(report, b"".join([b[0], *reversed(b[1:])])).root.name == "nvidia-device"


def test_tampered_certificate_is_refused() -> None:
    report, chain = load()
    certs = x509.load_pem_x509_certificates(chain)
    der = certs[1].public_bytes(serialization.Encoding.DER)
    bad = x509.load_der_x509_certificate(flip(der, len(der) - 10))  # its issuer's signature
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [certs[0], bad, *certs[2:]])
    with pytest.raises(ChainError, match="GPU 0 chain verifies to no accepted root"):
        verify(report, pem)


def test_another_leaf_is_refused() -> None:
    report, chain = load()
    b = _blocks(chain)
    with pytest.raises(ChainError, match="is a CA"):  # the BROM cert as leaf of itself
        verify(report, b"".join([b[2], *b[2:]]))


# --- a bundle with the real GPU report (CPU: the simulated TEE, whose nonce we choose) -----------


def _bundle(report: bytes, chain: bytes) -> pb.EvidenceBundle:
    class RealGpu:
        def attest(self, nonce: bytes) -> list[pb.GpuEvidence]:
            return [pb.GpuEvidence(index=0, arch="HOPPER", report=report, cert_chain=chain)]

    return collect_bundle(
        cpu=SimulatedSnpTee(vendor()),
        gpu=RealGpu(),
        keys=Keyring().public,
        nonce=report[4:36],
        models={"m": b"\x01" * 32},
        issued_at_ms=int(time.time() * 1000),
    )


def _roots() -> RootStore:
    return RootStore.default().with_simulated(vendor().root_pem())


def test_bundle_with_real_gpu_verifies_and_pins() -> None:
    report, chain = load()
    b = _bundle(report, chain)
    now = dt.datetime.now(dt.UTC)
    g = verify(report, chain)
    pol = Policy(
        require_gpu=True,
        gpu_allowed_measurements={1: frozenset({g.measurements[1]})},
        gpu_allowed_driver_versions=frozenset({"550.90.07"}),
    ).allowing_simulated()
    w = verify_bundle(b, pol, _roots(), now, expected_nonce=report[4:36])
    assert w.gpu_count == 1 and w.gpus[0].measurements[1] == g.measurements[1]
    assert w.gpus[0].driver_version == "550.90.07"
    wrong = Policy(
        require_gpu=True,
        gpu_allowed_measurements={2: frozenset({"00" * 48})},
        gpu_allowed_vbios_versions=frozenset({"96.00.00.00.01"}),
    ).allowing_simulated()
    with pytest.raises(PolicyError) as exc:
        verify_bundle(b, wrong, _roots(), now)
    assert exc.value.problems == [
        "GPU 0 measurement 2 8048dfd18fe229bf… is not allowed",
        "GPU 0 VBIOS 96.00.9F.00.01 is not allowed",
    ]
