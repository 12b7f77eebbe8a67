"""Building blocks for release tests: a release key, a manifest, worker claims that fit it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.verify.release.manifest import (
    GpuReference,
    LaunchEntry,
    ReleaseKey,
    ReleaseManifest,
    Revocation,
    SignedManifest,
    SignedRevocation,
    sign_manifest,
    sign_revocation,
)
from ccgw.verify.release.policy import GpuClaim, WorkerClaims

NOW = datetime(2026, 6, 1, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
TRUSTED = ReleaseKey(KEY.public_key())
SNP_M = "ab" * 48
TDX_M = "cd" * 48
RTMR1, RTMR2 = "11" * 48, "22" * 48
MODEL = bytes(range(32))


def manifest(**changes: object) -> ReleaseManifest:
    m = ReleaseManifest(
        version="1.4.0",
        not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=150),
        launch=(
            LaunchEntry("sev-snp", SNP_M, 8, "EPYC-v4"),
            LaunchEntry("sev-snp", "ef" * 48, 16, "EPYC-v4"),
            LaunchEntry("tdx", TDX_M, 8, "", {1: RTMR1, 2: RTMR2}),
        ),
        models={"llama": MODEL.hex()},
        gpu=GpuReference(
            True,
            frozenset({"550.90.07"}),
            frozenset({"96.00.9F.00.01"}),
            {1: frozenset({"aa" * 48})},
        ),
        source="git 0123abcd deploy/image",
    )
    return replace(m, **changes)  # type: ignore[arg-type]


def signed(m: ReleaseManifest | None = None, key: Ed25519PrivateKey = KEY) -> SignedManifest:
    return sign_manifest(m or manifest(), key)


def revocation(doc: SignedManifest, key: Ed25519PrivateKey = KEY) -> SignedRevocation:
    return sign_revocation(Revocation(doc.digest, "CVE-2026-0001 in the worker", NOW), key)


GPU = GpuClaim(0, "550.90.07", "96.00.9F.00.01", {1: "aa" * 48, 2: "bb" * 48})


def snp_worker(**changes: object) -> WorkerClaims:
    w = WorkerClaims(platform="sev-snp", measurement=SNP_M, models={"llama": MODEL}, gpus=(GPU,))
    return replace(w, **changes)  # type: ignore[arg-type]
