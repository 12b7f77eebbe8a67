"""The release policy: each rule refuses on its own, and the refusal names the measurement and
every release checked."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.verify import limits
from ccgw.verify.errors import LimitError, PolicyError
from ccgw.verify.release.manifest import GpuReference, SignedManifest, parse_document
from ccgw.verify.release.policy import (
    LoggedRelease,
    LoggedRevocation,
    WorkerClaims,
    decide,
    release_view,
)
from tests.unit.release.helpers import (
    GPU,
    KEY,
    MODEL,
    NOW,
    RTMR1,
    RTMR2,
    SNP_M,
    TDX_M,
    TRUSTED,
    manifest,
    revocation,
    signed,
    snp_worker,
)


def judge(
    claims: WorkerClaims,
    releases: list[tuple[SignedManifest, int]],
    size: int = 100,
    revocations: tuple[LoggedRevocation, ...] = (),
    now=NOW,
):  # type: ignore[no-untyped-def]
    view = release_view([LoggedRelease(d, i) for d, i in releases], revocations, [TRUSTED], size)
    return decide(claims, view, now)


def refused(claims: WorkerClaims, releases: list[tuple[SignedManifest, int]], **kw: object) -> str:
    with pytest.raises(PolicyError) as exc:
        judge(claims, releases, **kw)  # type: ignore[arg-type]
    msg = str(exc.value)
    assert claims.measurement in msg  # always names the measurement …
    for doc, _ in releases:
        assert doc.digest[:16] in msg  # … and every release checked
    return msg


def test_accepted_under_release() -> None:
    doc = signed()
    ok = judge(snp_worker(), [(doc, 5)])
    assert ok.digest == doc.digest and ok.index == 5 and ok.launch.vcpus == 8
    assert "1.4.0" in ok.describe() and "8 vCPUs" in ok.describe()
    tdx = WorkerClaims(
        "tdx", TDX_M, {"llama": MODEL}, ("00" * 48, RTMR1, RTMR2, "00" * 48), gpus=(GPU,)
    )
    assert judge(tdx, [(doc, 5)]).launch.platform == "tdx"


def test_newest_accepting_release_wins() -> None:
    old, new = signed(manifest(version="1.3.0")), signed()
    assert judge(snp_worker(), [(old, 2), (new, 9)]).release.version == "1.4.0"


def test_forged_manifest_wrong_key() -> None:
    msg = refused(snp_worker(), [(signed(key=Ed25519PrivateKey.generate()), 3)])
    assert "not trusted" in msg


def test_forged_manifest_altered_field() -> None:
    doc = signed()
    forged = SignedManifest(
        replace(
            doc.manifest,
            launch=(*doc.manifest.launch[1:], replace(doc.manifest.launch[0], vcpus=4)),
        ),
        doc.signature,
    )
    assert "does not verify" in refused(snp_worker(vcpus=4), [(forged, 3)])


def test_manifest_outside_the_log() -> None:
    doc = signed()
    assert "not in the log at the verified checkpoint" in refused(
        snp_worker(), [(doc, 10)], size=10
    )
    assert judge(snp_worker(), [(doc, 9)], size=10).index == 9


def test_revoked() -> None:
    doc = signed()
    rev = LoggedRevocation(revocation(doc), 7)
    msg = refused(snp_worker(), [(doc, 3)], revocations=(rev,))
    assert "revoked at log index 7" in msg and "CVE-2026-0001" in msg


def test_revocation_beyond_checkpoint_or_forged_does_not_count() -> None:
    doc = signed()
    late = LoggedRevocation(revocation(doc), 50)
    forged = LoggedRevocation(revocation(doc, key=Ed25519PrivateKey.generate()), 4)
    view = release_view([LoggedRelease(doc, 3)], [late, forged], [TRUSTED], 50)
    assert decide(snp_worker(), view, NOW).digest == doc.digest
    assert len(view.ignored) == 2 and "beyond the verified checkpoint" in view.ignored[0]
    # once the checkpoint covers it, the revocation applies
    assert "revoked" in refused(snp_worker(), [(doc, 3)], size=51, revocations=(late,))


def test_revocation_by_another_trusted_key_does_not_revoke() -> None:
    other = Ed25519PrivateKey.generate()
    from ccgw.verify.release.manifest import ReleaseKey

    doc = signed()
    rev = LoggedRevocation(revocation(doc, key=other), 4)
    view = release_view(
        [LoggedRelease(doc, 3)], [rev], [TRUSTED, ReleaseKey(other.public_key())], 10
    )
    assert decide(snp_worker(), view, NOW).digest == doc.digest


def test_expired_and_not_yet_valid() -> None:
    doc = signed()
    assert "expired" in refused(snp_worker(), [(doc, 1)], now=NOW + timedelta(days=151))
    assert "not valid before" in refused(snp_worker(), [(doc, 1)], now=NOW - timedelta(days=31))


def test_measurement_not_in_any_release() -> None:
    a, b = signed(), signed(manifest(version="1.3.0"))
    msg = refused(snp_worker(measurement="99" * 48), [(a, 1), (b, 2)])
    assert msg.count("measurement not listed") == 2


def test_platform_must_match() -> None:
    refused(snp_worker(platform="tdx"), [(signed(), 1)])


def test_vcpu_shape_when_known() -> None:
    msg = refused(snp_worker(vcpus=4), [(signed(), 1)])
    assert "listed only for 8 vCPUs EPYC-v4, not 4 vCPUs" in msg
    assert judge(snp_worker(vcpus=8), [(signed(), 1)]).launch.vcpus == 8


def test_tdx_rtmrs_pinned() -> None:
    w = WorkerClaims(
        "tdx", TDX_M, {"llama": MODEL}, ("00" * 48, RTMR1, "99" * 48, "00" * 48), gpus=(GPU,)
    )
    assert "RTMRs differ" in refused(w, [(signed(), 1)])


def test_model_digest_not_allowed() -> None:
    msg = refused(snp_worker(models={"llama": bytes(32)}), [(signed(), 1)])
    assert "model 'llama' has digest" in msg
    msg = refused(snp_worker(models={"llama": MODEL, "other": MODEL}), [(signed(), 1)])
    assert "model 'other' is not in the release" in msg


def test_gpu_reference_values() -> None:
    doc = signed()
    assert "requires a GPU" in refused(snp_worker(gpus=()), [(doc, 1)])
    assert "driver 535.1 not allowed" in refused(
        snp_worker(gpus=(replace(GPU, driver_version="535.1"),)), [(doc, 1)]
    )
    assert "VBIOS" in refused(snp_worker(gpus=(replace(GPU, vbios_version="x"),)), [(doc, 1)])
    assert "measurement 1 not a golden value" in refused(
        snp_worker(gpus=(replace(GPU, measurements={1: "00"}),)), [(doc, 1)]
    )
    unpinned = signed(manifest(gpu=GpuReference(required=False)))
    assert judge(snp_worker(gpus=()), [(unpinned, 1)]).digest == unpinned.digest
    no_gpu = signed(manifest(gpu=None))
    assert judge(snp_worker(gpus=(replace(GPU, driver_version="x"),)), [(no_gpu, 1)])


def test_no_release_supplied() -> None:
    with pytest.raises(PolicyError, match="no release was supplied"):
        judge(snp_worker(), [])


def test_inputs_bounded() -> None:
    doc = signed()
    with pytest.raises(LimitError):
        release_view(
            [LoggedRelease(doc, 0)] * (limits.RELEASES_CONSIDERED_MAX + 1), [], [TRUSTED], 1
        )


def test_document_bytes_round_trip_into_policy() -> None:
    """What a log entry carries (the canonical document) is what the policy judges."""
    doc = parse_document(signed().to_bytes())
    assert isinstance(doc, SignedManifest)
    assert judge(snp_worker(), [(doc, 0)], size=1).digest == doc.digest
    assert SNP_M in str(doc.manifest.launch) and KEY is not None
