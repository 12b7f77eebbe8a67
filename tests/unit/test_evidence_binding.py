"""Evidence that does not bind the presented keys, or whose signature or chain is broken, is
refused; the simulated root is refused unless a policy names it."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest

from ccgw.enclave.evidence_bundle import collect_bundle
from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.simtee import SimulatedSnpTee, SimulatedVendor
from ccgw.verify.attestation.bundle import verify_bundle
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.errors import BindingError, ChainError, FreshnessError, PolicyError, SignatureError
from tests.support.cluster import vendor


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)  # per call: the suite can run for minutes after import


SIM = Policy().allowing_simulated()


def make(
    tee: SimulatedSnpTee | None = None, nonce: bytes | None = None
) -> tuple[pb.EvidenceBundle, bytes]:
    nonce = nonce or os.urandom(32)
    b = collect_bundle(
        cpu=tee or SimulatedSnpTee(vendor()),
        gpu=None,
        keys=Keyring().public,
        nonce=nonce,
        models={"m": b"\x07" * 32},
        issued_at_ms=int(time.time() * 1000),
    )
    return b, nonce


def roots() -> RootStore:
    return RootStore.default().with_simulated(vendor().root_pem())


def test_valid_simulated_bundle_verifies_only_when_allowed() -> None:
    b, nonce = make()
    w = verify_bundle(b, SIM, roots(), now(), expected_nonce=nonce)
    assert w.simulated and w.root == "simulated" and w.models == {"m": b"\x07" * 32}
    with pytest.raises(ChainError, match="not an accepted root"):
        verify_bundle(b, Policy(), roots(), now())
    with pytest.raises(ChainError):  # allowed by name but root certificate not supplied
        verify_bundle(b, SIM, RootStore.default(), now())


@pytest.mark.parametrize("field", ["hpke_x25519", "hpke_mlkem768_x25519", "receipt_ed25519"])
def test_swapped_keys_are_refused(field: str) -> None:
    b, _ = make()
    setattr(b.keys, field, getattr(Keyring().public, field))
    with pytest.raises(BindingError):
        verify_bundle(b, SIM, roots(), now())


@pytest.mark.parametrize("what", ["nonce", "models", "issued_at_ms"])
def test_other_bound_fields_are_refused(what: str) -> None:
    b, _ = make()
    if what == "nonce":
        b.nonce = os.urandom(32)
    elif what == "models":
        b.models[0].sha256 = b"\x08" * 32
    else:
        b.issued_at_ms -= 1
    with pytest.raises(BindingError):
        verify_bundle(b, SIM, roots(), now())


def test_wrong_nonce_is_refused() -> None:
    b, _ = make()
    with pytest.raises(FreshnessError):
        verify_bundle(b, SIM, roots(), now(), expected_nonce=os.urandom(32))


def test_stale_evidence_is_refused() -> None:
    b, _ = make()
    later = now() + dt.timedelta(seconds=SIM.max_evidence_age_s + 120)
    with pytest.raises(FreshnessError, match="old"):
        verify_bundle(b, SIM, roots(), later)


@pytest.mark.parametrize("offset", [0x90, 0x2A0, 0x2A0 + 72])  # measurement, r, s
def test_broken_report_signature_is_refused(offset: int) -> None:
    b, _ = make()
    r = bytearray(b.cpu_report)
    r[offset] ^= 1
    b.cpu_report = bytes(r)
    with pytest.raises(SignatureError):
        verify_bundle(b, SIM, roots(), now())


def test_vcek_from_another_vendor_is_refused() -> None:
    b, _ = make(SimulatedSnpTee(SimulatedVendor.generate()))
    with pytest.raises(ChainError):
        verify_bundle(b, SIM, roots(), now())


def test_chain_in_wrong_order_is_refused() -> None:
    b, _ = make()
    certs = list(b.cpu_certs)
    del b.cpu_certs[:]
    b.cpu_certs.extend([certs[0], certs[2], certs[1]])
    with pytest.raises(ChainError):
        verify_bundle(b, SIM, roots(), now())


def test_debug_guest_is_refused_and_measurement_pinned() -> None:
    b, _ = make(SimulatedSnpTee(vendor(), debug=True))
    with pytest.raises(PolicyError, match="debugging"):
        verify_bundle(b, SIM, roots(), now())
    from dataclasses import replace

    b, _ = make()
    pinned = replace(SIM, allowed_measurements=frozenset({"ab" * 48}))
    with pytest.raises(PolicyError, match="measurement"):
        verify_bundle(b, pinned, roots(), now())
