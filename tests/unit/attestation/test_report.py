"""The report's rules over spec-built evidence: CA:FALSE issuers refused by every vendor's chain
code, CRL revocation (pass, revoked, forged, stale), skips versus enforcement, model digests, the
simulated root, the policy's [checks] table."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ccgw.enclave.evidence_bundle import collect_bundle
from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify.attestation import sevsnp
from ccgw.verify.attestation.bundle import verify_bundle
from ccgw.verify.attestation.policy import Policy, load_policy
from ccgw.verify.attestation.report import ALWAYS_ENFORCED, AttestationReport, Status
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.attestation.supplied import Collateral
from ccgw.verify.attestation.x509chain import verify_chain, verify_chain_webpki
from ccgw.verify.errors import ChainError, PolicyError, PolicyFileError, VerifyError
from tests.support.evidence_builders import (
    NOW,
    GpuStub,
    SnpBuilder,
    _cert,
    make_crl,
    nvidia_root,
    nvidia_root_store,
)
from tests.support.evidence_builders import amd as amd_vendor


@pytest.fixture(scope="module")
def cpu() -> SnpBuilder:
    return SnpBuilder("milan", version=3)


def bundle(cpu: SnpBuilder, gpu: GpuStub | None = None) -> pb.EvidenceBundle:
    return collect_bundle(
        cpu=cpu,
        gpu=gpu,
        keys=Keyring().public,
        nonce=os.urandom(32),
        models={"llama": b"\x07" * 32},
        issued_at_ms=int(NOW.timestamp() * 1000),
    )


def roots(cpu: SnpBuilder) -> RootStore:
    return nvidia_root_store(cpu.vendor.root_store())


def report_of(
    b: pb.EvidenceBundle, policy: Policy, store: RootStore, **kw: object
) -> AttestationReport:
    try:
        w = verify_bundle(b, policy, store, NOW, **kw)  # type: ignore[arg-type]
    except VerifyError as exc:
        rep = exc.report
    else:
        rep = w.report
    assert isinstance(rep, AttestationReport)
    return rep


# --- CA:FALSE issuers -----------------------------------------------------------------------


def test_amd_chain_with_an_end_entity_as_issuer_is_refused(cpu: SnpBuilder) -> None:
    """A VCEK (CA:FALSE) signs another VCEK-shaped certificate: hand-coded AMD path validation."""
    v = cpu.vendor
    key = ec.generate_private_key(ec.SECP384R1())
    forged = _cert("SEV-VCEK", "SEV-VCEK", key.public_key(), cpu.key, ca=False, pss=False)
    with pytest.raises(ChainError, match="is not a CA"):
        verify_chain([forged, cpu.cert, v.ask, v.ark], [v.ark], NOW, "SEV-SNP")
    with pytest.raises(ChainError, match="is not a CA"):
        verify_chain([forged, cpu.cert], [v.ark], NOW, "SEV-SNP")


def test_webpki_chains_with_an_end_entity_as_issuer_are_refused() -> None:
    """Intel and NVIDIA chains (cryptography.x509.verification): a CA:FALSE intermediate."""
    root_key, root = nvidia_root()
    mid_key = ec.generate_private_key(ec.SECP384R1())
    mid = _cert(
        "Not a CA",
        "Test Device Identity CA",
        mid_key.public_key(),
        root_key,
        ca=False,
        pss=False,
        issuer_key=root_key.public_key(),
    )
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    leaf = _cert(
        "Leaf",
        "Not a CA",
        leaf_key.public_key(),
        mid_key,
        ca=False,
        pss=False,
        issuer_key=mid_key.public_key(),
    )
    with pytest.raises(ChainError, match="does not verify to a pinned root"):
        verify_chain_webpki(leaf, [mid], [root], NOW, "GPU")


def test_real_intel_pck_cannot_issue_certificates() -> None:
    """A certificate 'issued' by the real PCK leaf is refused (it is CA:FALSE)."""
    from ccgw.verify.attestation import tdx as tdxmod
    from tests.vectors._paths import vectors_dir

    q = tdxmod.parse_quote((vectors_dir() / "tdx" / "tdx_prod_quote_SPR_E4.dat").read_bytes())
    pck, ca, root = x509.load_pem_x509_certificates(q.pck_chain_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    fake = _cert("child", "Intel SGX PCK Certificate", key.public_key(), key, ca=False, pss=False)
    when = dt.datetime(2023, 7, 1, tzinfo=dt.UTC)
    with pytest.raises(ChainError):
        verify_chain_webpki(fake, [pck, ca], [root], when, "TDX PCK")
    with pytest.raises(ChainError, match="is not a CA"):
        verify_chain([fake, pck, ca, root], [root], when, "hand")


def test_path_length_is_respected(cpu: SnpBuilder) -> None:
    v = cpu.vendor
    k2 = ec.generate_private_key(ec.SECP384R1())
    sub = _cert("SEV-Sub", v.ask_cn, k2.public_key(), v.ask_key, ca=True)  # ASK pathlen None
    leaf = _cert("SEV-VCEK", "SEV-Sub", cpu.key.public_key(), k2, ca=False, pss=False)
    verify_chain([leaf, sub, v.ask, v.ark], [v.ark], NOW, "ok")  # no pathlen: allowed
    from tests.support import evidence_builders as eb

    ark_key = v.ark_key
    tight = (
        x509.CertificateBuilder()
        .subject_name(v.ask.subject)
        .issuer_name(v.ark.subject)
        .public_key(v.ask_key.public_key())
        .serial_number(7)
        .not_valid_before(eb.VALID_FROM)
        .not_valid_after(NOW + dt.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(eb.key_usage(True), critical=True)
        .sign(ark_key, hashes.SHA384(), rsa_padding=eb._PSS)
    )
    with pytest.raises(ChainError, match="allows 0 intermediate"):
        verify_chain([leaf, sub, tight, v.ark], [v.ark], NOW, "pathlen")


# --- revocation ------------------------------------------------------------------------------


def test_amd_ask_revocation_pass_revoked_forged_stale(cpu: SnpBuilder) -> None:
    v, b = cpu.vendor, bundle(cpu)
    good = report_of(b, Policy(), roots(cpu), collateral=Collateral(crls=(v.crl(),)))
    assert good.check("cpu.revocation").status is Status.PASS
    revoked = Collateral(crls=(v.crl([v.ask.serial_number]),))
    with pytest.raises(ChainError, match="SEV-Test is revoked"):
        verify_bundle(b, Policy(), roots(cpu), NOW, collateral=revoked)
    other = amd_vendor("genoa")  # a CRL with the right name but another key
    forged = make_crl(
        v.ark, other.ark_key, [], NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1), pss=True
    )
    rep = report_of(b, Policy(), roots(cpu), collateral=Collateral(crls=(forged,)))
    assert rep.check("cpu.revocation").status is Status.SKIP
    assert "signature does not verify" in rep.check("cpu.revocation").detail[0]
    stale = v.crl(next_update=NOW - dt.timedelta(days=1))
    rep = report_of(b, Policy(), roots(cpu), collateral=Collateral(crls=(stale,)))
    assert "expired" in rep.check("cpu.revocation").detail[0]
    garbage = report_of(b, Policy(), roots(cpu), collateral=Collateral(crls=(b"junk",)))
    assert garbage.check("cpu.revocation").status is Status.SKIP and garbage.trusted


def test_gpu_revocation_from_an_nvidia_crl() -> None:
    cpu = SnpBuilder("genoa", version=3)
    gpu = GpuStub()
    root_key, root = nvidia_root()
    b = bundle(cpu, gpu)
    rep = report_of(b, Policy(require_gpu=True), roots(cpu))
    assert rep.check("gpu.revocation").status is Status.SKIP  # the test leaf names no CRL
    assert rep.check("gpu.revocation").detail == (
        "no certificate in the chain publishes a CRL or an OCSP responder",
    )
    crl = make_crl(
        root,
        root_key,
        [gpu.leaf.serial_number],
        NOW - dt.timedelta(days=1),
        NOW + dt.timedelta(days=1),
    )
    from ccgw.verify.attestation import crl as crlmod

    res = crlmod.check_chain([gpu.leaf, root], [crlmod.load_crl(crl, "t")], NOW)
    assert res.certs == ()  # no distribution point on the leaf: nothing to consult


# --- skips, enforcement, models, simulated root ----------------------------------------------


def test_default_policy_trusts_with_visible_skips(cpu: SnpBuilder) -> None:
    rep = report_of(bundle(cpu), Policy(), roots(cpu))
    assert rep.trusted
    skips = {c.id for c in rep.checks if c.status is Status.SKIP}
    assert {
        "evidence.nonce",
        "cpu.tcb",
        "cpu.collateral",
        "cpu.revocation",
        "release.inclusion",
        "platform.identity",
        "models.digests",
        "cpu.measurement",
        "gpu.report",
    } <= skips
    passed, total = rep.score
    assert passed + len(skips) == total  # nothing failed; a skip never counts as a pass
    assert all(rep.check(c).enforced for c in ALWAYS_ENFORCED)


@pytest.mark.parametrize(
    "check",
    ["cpu.revocation", "cpu.tcb", "models.digests", "release.inclusion", "platform.identity"],
)
def test_each_skip_refuses_when_enforced(cpu: SnpBuilder, check: str) -> None:
    with pytest.raises(PolicyError, match=f"{check} was skipped") as exc:
        verify_bundle(bundle(cpu), Policy(enforce=frozenset({check})), roots(cpu), NOW)
    assert exc.value.report.check(check).refuses  # type: ignore[attr-defined]


def test_enforce_everything(cpu: SnpBuilder) -> None:
    with pytest.raises(PolicyError) as exc:
        verify_bundle(bundle(cpu), Policy(enforce=frozenset({"*"})), roots(cpu), NOW)
    assert len(exc.value.problems) >= 10


def test_model_digests_pass_and_fail(cpu: SnpBuilder) -> None:
    ok = Policy(allowed_model_digests={"llama": frozenset({"07" * 32})})
    assert report_of(bundle(cpu), ok, roots(cpu)).check("models.digests").status is Status.PASS
    bad = Policy(allowed_model_digests={"llama": frozenset({"08" * 32})})
    with pytest.raises(PolicyError, match="model llama weights"):
        verify_bundle(bundle(cpu), bad, roots(cpu), NOW)


def test_tcb_minimum_and_measurement_pass_and_fail(cpu: SnpBuilder) -> None:
    ok = Policy(snp_min_tcb={"snp": 8}, allowed_measurements=frozenset({cpu.measurement.hex()}))
    rep = report_of(bundle(cpu), ok, roots(cpu))
    assert rep.check("cpu.tcb").status is Status.PASS
    assert rep.check("cpu.measurement").status is Status.PASS
    bad = Policy(snp_min_tcb={"snp": 9}, allowed_measurements=frozenset({"00" * 48}))
    rep = report_of(bundle(cpu), bad, roots(cpu))
    assert rep.check("cpu.tcb").status is Status.FAIL
    assert rep.check("cpu.measurement").status is Status.FAIL


def test_simulated_root_is_a_loud_skip() -> None:
    from ccgw.simtee import SimulatedSnpTee
    from tests.support.cluster import vendor

    b = collect_bundle(
        cpu=SimulatedSnpTee(vendor()),
        gpu=None,
        keys=Keyring().public,
        nonce=os.urandom(32),
        models={},
        issued_at_ms=int(dt.datetime.now(dt.UTC).timestamp() * 1000),
    )
    store = RootStore.default().with_simulated(vendor().root_pem())
    w = verify_bundle(b, Policy().allowing_simulated(), store, dt.datetime.now(dt.UTC))
    assert w.report is not None
    real = w.report.check("root.real")
    assert real.status is Status.SKIP and "SIMULATED" in real.detail[0] and not real.enforced


def test_vlek_signed_report_chains_through_the_packaged_asvk() -> None:
    """A VLEK alone in the bundle: the ASVK shipped with the Genoa root completes the chain."""
    genoa = RootStore.default().roots["amd-genoa"]
    asvk = next(c for c in genoa.intermediates if "VLEK" in c.subject.rfc4514_string())
    assert asvk.issuer == genoa.cert.subject
    got = sevsnp._complete([_vlek_like(asvk)], genoa)
    assert got[-1] == asvk


def _vlek_like(asvk: x509.Certificate) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP384R1())
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "SEV-VLEK")]))
        .issuer_name(asvk.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
    )
    return b.sign(key, hashes.SHA384())


def test_policy_checks_table() -> None:
    p = load_policy(
        'version = 1\naccepted_roots = ["amd-milan"]\n[checks]\nenforce = ["cpu.revocation"]\n'
    )
    assert p.enforces("cpu.revocation") and not p.enforces("cpu.collateral")
    assert p.enforces("cpu.signature") and p.enforces("root.real")
    with pytest.raises(PolicyFileError, match=r"'cpu\.nope' is not a check"):
        load_policy(
            'version = 1\naccepted_roots = ["amd-milan"]\n[checks]\nenforce = ["cpu.nope"]\n'
        )
    with pytest.raises(PolicyFileError, match=r"models\.llama"):
        load_policy('version = 1\naccepted_roots = ["amd-milan"]\n[models]\nllama = ["zz"]\n')
