"""Real TDX quotes (go-tdx-guest's production SPR E4 quote v4, the COS quote v4, the v5 sample)
verify to the pinned Intel SGX Root CA; every single-field tamper fails naming what failed; Intel's
sample collateral is evaluated."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import pytest

from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify.attestation import collateral, tcb_status, tdx
from ccgw.verify.attestation.bundle import verify_bundle
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.errors import (
    BindingError,
    ChainError,
    FreshnessError,
    MalformedError,
    PolicyError,
    SignatureError,
)
from tests.vectors._paths import vectors_dir

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
QUOTES = ["tdx_prod_quote_SPR_E4.dat", "cos-113-tdx-quote.dat", "quote_v5_sample.dat"]


def path(name: str) -> Path:
    return vectors_dir() / "tdx" / name


def intel() -> list:  # type: ignore[type-arg]
    return RootStore.default().for_platform(frozenset({"intel-sgx"}), "tdx")


def verify(data: bytes, when: dt.datetime = NOW) -> tdx.VerifiedTdx:
    return tdx.verify_quote(data, intel(), when)


@pytest.mark.parametrize("name", QUOTES)
def test_real_quote_verifies(name: str) -> None:
    v = verify(path(name).read_bytes())
    assert v.root.name == "intel-sgx"
    assert v.quote.qe_vendor_id == tdx.INTEL_QE_VENDOR_ID
    assert len(v.pck_info.ppid) == 16 and len(v.pck_info.fmspc) == 6
    assert not v.quote.body.debug


def test_quote_versions_and_bodies() -> None:
    spr = verify(path(QUOTES[0]).read_bytes())
    v5 = verify(path(QUOTES[2]).read_bytes())
    assert (spr.quote.version, spr.quote.body_type, spr.quote.body.mr_service_td) == (4, 2, None)
    assert (v5.quote.version, v5.quote.body_type) == (5, 3)
    assert v5.quote.body.mr_service_td is not None and v5.quote.body.tee_tcb_svn2 is not None
    assert spr.pck_info.fmspc.hex() == "50806f000000" and spr.pck_info.pce_svn == 11
    assert spr.quote.trailing_bytes == 39  # go-tdx-guest appended a note after the quote


def test_wrong_root_is_refused() -> None:
    milan = RootStore.default().for_platform(frozenset({"amd-milan"}), "sev-snp")
    with pytest.raises(ChainError, match="TDX PCK chain verifies to no accepted root"):
        tdx.verify_quote(path(QUOTES[0]).read_bytes(), milan, NOW)


def flip(data: bytes, offset: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 0x01
    return bytes(b)


BODY = 48
SIG_DATA = 48 + 584 + 4
QE_REPORT = SIG_DATA + 64 + 64 + 6


@pytest.mark.parametrize(
    ("what", "offset", "error", "named"),
    [
        ("header user data", 40, SignatureError, "quote signature"),
        ("TEE_TCB_SVN", BODY, SignatureError, "quote signature"),
        ("MRTD", BODY + 136, SignatureError, "quote signature"),
        ("RTMR0", BODY + 328, SignatureError, "quote signature"),
        ("report_data", BODY + 520, SignatureError, "quote signature"),
        ("quote signature", SIG_DATA + 5, SignatureError, "quote signature"),
        ("attestation key", SIG_DATA + 64 + 5, SignatureError, "does not bind the attestation key"),
        ("QE report MRSIGNER", QE_REPORT + 128, SignatureError, "QE report signature"),
        ("QE report data", QE_REPORT + 320, SignatureError, "QE report signature"),
        ("QE report signature", QE_REPORT + 384 + 3, SignatureError, "QE report signature"),
        (
            "QE auth data",
            QE_REPORT + 384 + 64 + 2,
            SignatureError,
            "does not bind the attestation key",
        ),
        ("version", 0, MalformedError, "v5 body size"),  # 4 ^ 1 = 5: the v5 layout no longer fits
        ("TEE type", 4, MalformedError, "TEE type"),
        ("attestation key type", 2, MalformedError, "attestation key type"),
        ("QE vendor", 12, MalformedError, "QE vendor"),
    ],
)
def test_single_field_tamper_is_refused(what: str, offset: int, error: type, named: str) -> None:
    data = path(QUOTES[0]).read_bytes()
    with pytest.raises(error, match=named):
        verify(flip(data, offset))


def _pem_blocks(data: bytes) -> tuple[int, list[bytes]]:
    start = data.index(b"-----BEGIN CERTIFICATE-----")
    end = data.rindex(b"-----END CERTIFICATE-----") + len(b"-----END CERTIFICATE-----\n")
    blocks = data[start:end].split(b"-----END CERTIFICATE-----\n")
    return start, [b + b"-----END CERTIFICATE-----\n" for b in blocks if b]


def test_tampered_pck_certificate_is_refused() -> None:
    data = bytearray(path(QUOTES[0]).read_bytes())
    start, _blocks = _pem_blocks(bytes(data))
    pos = start + 28 + 64 * 5 + 7  # a base64 character inside the PCK certificate's body
    data[pos] = ord("A") if data[pos] != ord("A") else ord("B")
    with pytest.raises((ChainError, MalformedError), match="PCK"):
        verify(bytes(data))


def test_pck_chain_out_of_order_is_refused() -> None:
    data = path(QUOTES[0]).read_bytes()
    start, blocks = _pem_blocks(data)
    swapped = blocks[1] + blocks[0] + b"".join(blocks[2:])
    out = data[:start] + swapped + data[start + len(swapped) :]
    with pytest.raises(ChainError, match="is a CA, not an end entity"):
        verify(out)


def test_truncated_quote_is_malformed() -> None:
    data = path(QUOTES[2]).read_bytes()
    with pytest.raises(MalformedError, match="truncated"):
        verify(data[:2000])


def test_v5_body_size_must_match_type() -> None:
    data = bytearray(path(QUOTES[2]).read_bytes())
    struct.pack_into("<I", data, 50, 584)
    with pytest.raises(MalformedError, match="body size 584, expected 648"):
        verify(bytes(data))


# --- collateral: Intel's sample TCB info / QE identity, signed by Intel's TCB signing chain --------

V5_WHEN = dt.datetime(2026, 2, 10, tzinfo=dt.UTC)  # while the v5 sample TCB info is current
SPR_WHEN = dt.datetime(2023, 7, 1, tzinfo=dt.UTC)  # while the 2023 samples are current


def chain(name: str = "tcb_info_issuer_chain.pem") -> bytes:
    return path(name).read_bytes()


def doc(name: str, key: str, when: dt.datetime, chains: list[bytes]) -> collateral.SignedDoc:
    return collateral.verify_doc(path(name).read_bytes(), key, chains, intel(), when)


def test_intel_collateral_signatures_verify_to_the_intel_root() -> None:
    info = doc("sample_tcbInfo_response", collateral.TCB_INFO, SPR_WHEN, [chain()])
    qe = doc("sample_qeIdentity_response", collateral.QE_IDENTITY, SPR_WHEN, [chain()])
    assert (info.ident, info.body["fmspc"], qe.ident) == ("TDX", "50806f000000", "TD_QE")
    renewed = chain("tcb_info_issuer_chain_2025.pem")  # same key, certificate renewed in 2025
    v5 = doc("sample_tcbinfo_response_v5", collateral.TCB_INFO, V5_WHEN, [chain(), renewed])
    assert v5.body["fmspc"] == "90c06f000000"


def test_intel_collateral_without_a_signing_chain_is_not_trusted() -> None:
    with pytest.raises(ChainError, match="no Intel TCB signing chain supplied"):
        doc("sample_tcbInfo_response", collateral.TCB_INFO, SPR_WHEN, [])


def test_intel_collateral_with_an_expired_signing_certificate_is_not_trusted() -> None:
    with pytest.raises(ChainError, match="does not verify to a pinned root"):
        doc("sample_tcbinfo_response_v5", collateral.TCB_INFO, V5_WHEN, [chain()])


def test_tampered_intel_collateral_is_refused() -> None:
    raw = path("sample_tcbInfo_response").read_bytes().replace(b'"OutOfDate"', b'"UpToDate"', 1)
    with pytest.raises(SignatureError, match="tcbInfo signature does not verify"):
        collateral.verify_doc(raw, collateral.TCB_INFO, [chain()], intel(), SPR_WHEN)


def test_stale_intel_collateral_is_refused() -> None:
    renewed = chain("tcb_info_issuer_chain_2025.pem")
    with pytest.raises(FreshnessError, match="not current"):
        doc("sample_tcbinfo_response_v5", collateral.TCB_INFO, NOW, [renewed])


def test_a_chain_not_signed_by_the_tcb_signing_certificate_is_refused() -> None:
    with pytest.raises(ChainError, match="signer is not"):
        doc(
            "sample_tcbInfo_response",
            collateral.TCB_INFO,
            SPR_WHEN,
            [chain("pck_crl_issuer_chain.pem")],
        )


def test_v5_quote_is_up_to_date_under_its_tcb_info() -> None:
    v = verify(path(QUOTES[2]).read_bytes(), V5_WHEN)
    info = doc(
        "sample_tcbinfo_response_v5",
        collateral.TCB_INFO,
        V5_WHEN,
        [chain("tcb_info_issuer_chain_2025.pem")],
    )
    assert tcb_status.platform_status(info, v) == ("UpToDate", ())


def test_collateral_for_another_platform_is_refused() -> None:
    v = verify(path(QUOTES[2]).read_bytes(), V5_WHEN)
    info = doc("sample_tcbInfo_response", collateral.TCB_INFO, SPR_WHEN, [chain()])
    with pytest.raises(PolicyError, match="FMSPC 50806f000000"):
        tcb_status.platform_status(info, v)


def test_spr_quote_below_every_tcb_level_is_refused() -> None:
    v = verify(path(QUOTES[0]).read_bytes(), SPR_WHEN)
    info = doc("sample_tcbInfo_response", collateral.TCB_INFO, SPR_WHEN, [chain()])
    qe = doc("sample_qeIdentity_response", collateral.QE_IDENTITY, SPR_WHEN, [chain()])
    assert tcb_status.qe_status(qe, v) == "UpToDate"
    with pytest.raises(PolicyError, match="below every level"):
        tcb_status.evaluate(v, info, qe)


def test_real_quote_in_a_bundle_reaches_the_binding_check() -> None:
    """Dispatch: a TDX bundle is verified as TDX; a quote that does not commit to the bundle's keys,
    nonce and GPU evidence is refused at the binding step."""
    from ccgw.enclave.keys import Keyring

    b = pb.EvidenceBundle(
        version=1,
        platform=pb.TDX,
        cpu_report=path(QUOTES[0]).read_bytes(),
        keys=Keyring().public,
        nonce=bytes(32),
        issued_at_ms=int(NOW.timestamp() * 1000),
    )
    with pytest.raises(BindingError):
        verify_bundle(b, Policy(), RootStore.default(), NOW)
    b.cpu_certs.append(b"x")
    with pytest.raises(MalformedError, match="cpu_certs must be empty"):
        verify_bundle(b, Policy(), RootStore.default(), NOW)


def test_tdx_rules_on_a_real_quote_list_every_problem() -> None:
    from ccgw.verify.attestation.report import ReportBuilder, Status
    from ccgw.verify.attestation.validate import tdx_checks

    v = verify(path(QUOTES[0]).read_bytes())
    body = v.quote.body
    ok = Policy(
        allowed_measurements=frozenset({body.mr_td.hex()}),
        allowed_platform_ids=frozenset({v.pck_info.ppid.hex()}),
        tdx_allowed_rtmrs={i: frozenset({r.hex()}) for i, r in enumerate(body.rtmrs)},
        tdx_allowed_mr_seam=frozenset({body.mr_seam.hex()}),
        tdx_min_tee_tcb_svn=body.tee_tcb_svn,
    )
    b = ReportBuilder(ok.enforcement())
    tdx_checks(b, v, ok)
    rep = b.build()
    for cid in ("cpu.debug", "cpu.tcb", "cpu.measurement", "platform.identity"):
        assert rep.check(cid).status is Status.PASS, cid
    bad = Policy(
        allowed_measurements=frozenset({"00" * 48}),
        allowed_platform_ids=frozenset({"00" * 16}),
        tdx_allowed_rtmrs={2: frozenset({"11" * 48})},
        tdx_allowed_mr_seam=frozenset({"22" * 48}),
        tdx_min_tee_tcb_svn=b"\x09" * 16,
    )
    b = ReportBuilder(bad.enforcement())
    tdx_checks(b, v, bad)
    rep = b.build()
    assert len(rep.check("cpu.measurement").detail) == 3
    assert rep.check("cpu.tcb").status is Status.FAIL
    assert rep.check("platform.identity").detail == (
        f"platform {v.pck_info.ppid.hex()[:16]}… is not a registered machine",
    )
