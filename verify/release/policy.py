"""The release policy: is this verified worker running software that a trusted release allows?

    view = release_view(releases, revocations, keys, checkpoint_size)  # once per checkpoint
    accepted = decide(claims, view, now)                                  # per worker (pure)

A release counts only if it is signed by a trusted release key, sits in the log at an index below
the verified checkpoint's size, is not revoked by a revocation signed by the same key and also in
the log below that size, and is valid at `now` (not_before ≤ now < not_after). The worker is
accepted under such a release when its platform and launch measurement are listed (with the
vCPU shape, when the worker's shape is known, and the pinned TDX RTMRs), its GPUs meet the GPU
reference values, and every model it serves has the digest the release names. Otherwise
PolicyError names the measurement and every release checked with why it did not apply.

Callers verify the checkpoint (verify.release.logview) and the entries' inclusion proofs first;
the policy trusts the indices it is given only as far as that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from ccgw.verify import limits
from ccgw.verify.errors import LimitError, PolicyError, SignatureError
from ccgw.verify.release.manifest import (
    GpuReference,
    LaunchEntry,
    ReleaseKey,
    ReleaseManifest,
    SignedManifest,
    SignedRevocation,
)

if TYPE_CHECKING:
    from ccgw.verify.attestation.bundle import VerifiedWorker


@dataclass(frozen=True)
class GpuClaim:
    index: int
    driver_version: str | None
    vbios_version: str | None
    measurements: Mapping[int, str]  # measurement index → hex


@dataclass(frozen=True)
class WorkerClaims:
    """What verified evidence says about a worker, as far as releases are concerned."""

    platform: str  # "sev-snp" | "tdx"
    measurement: str  # hex SEV-SNP MEASUREMENT / TDX MRTD
    models: Mapping[str, bytes]  # served model name → SHA-256 of its weights
    rtmrs: tuple[str, ...] = ()  # TDX RTMR0–3, hex
    vcpus: int | None = None  # when known by other means (SEV-SNP: implied by the measurement)
    gpus: tuple[GpuClaim, ...] = ()

    @classmethod
    def of(cls, worker: VerifiedWorker, vcpus: int | None = None) -> WorkerClaims:
        return cls(
            platform=worker.platform,
            measurement=worker.measurement,
            models=dict(worker.models),
            rtmrs=tuple(worker.rtmrs),
            vcpus=vcpus,
            gpus=tuple(
                GpuClaim(g.index, g.driver_version, g.vbios_version, dict(g.measurements))
                for g in worker.gpus
            ),
        )

    def describe(self) -> str:
        shape = f", {self.vcpus} vCPUs" if self.vcpus is not None else ""
        return f"{self.platform} measurement {self.measurement}{shape}"


@dataclass(frozen=True)
class LoggedRelease:
    document: SignedManifest
    index: int  # its position in the log


@dataclass(frozen=True)
class LoggedRevocation:
    document: SignedRevocation
    index: int


@dataclass(frozen=True)
class Candidate:
    """A release that passed the log-level rules, or the reason it did not."""

    document: SignedManifest
    index: int
    excluded: str = ""  # why it cannot accept anyone ("" = it can)

    @property
    def name(self) -> str:
        doc = self.document
        return f"{doc.manifest.version} ({doc.digest[:16]}, log index {self.index})"


@dataclass(frozen=True)
class ReleaseView:
    """The releases as of one verified checkpoint (signatures, inclusion and revocation settled)."""

    checkpoint_size: int
    candidates: tuple[Candidate, ...] = ()
    ignored: tuple[str, ...] = field(default=())  # revocations that did not count, and why


@dataclass(frozen=True)
class Accepted:
    release: ReleaseManifest
    digest: str
    index: int
    launch: LaunchEntry

    def describe(self) -> str:
        return (
            f"release {self.release.version} ({self.digest[:16]}, log index {self.index}), "
            f"{self.launch.platform} {self.launch.shape()}"
        )


def release_view(
    releases: Sequence[LoggedRelease],
    revocations: Sequence[LoggedRevocation],
    keys: Sequence[ReleaseKey],
    checkpoint_size: int,
) -> ReleaseView:
    if len(releases) > limits.RELEASES_CONSIDERED_MAX:
        raise LimitError(f"{len(releases)} releases; limit {limits.RELEASES_CONSIDERED_MAX}")
    if len(revocations) > limits.REVOCATIONS_CONSIDERED_MAX:
        raise LimitError(
            f"{len(revocations)} revocations; limit {limits.REVOCATIONS_CONSIDERED_MAX}"
        )
    revoked: dict[tuple[str, str], LoggedRevocation] = {}
    ignored: list[str] = []
    for r in revocations:
        what = f"revocation of {r.document.revocation.release[:16]} at log index {r.index}"
        if r.index >= checkpoint_size:
            ignored.append(f"{what}: beyond the verified checkpoint (size {checkpoint_size})")
            continue
        try:
            signer = r.document.verify(keys)
        except SignatureError as exc:
            ignored.append(f"{what}: {exc}")
            continue
        key = (r.document.revocation.release, signer.key_id)
        if key not in revoked or r.index < revoked[key].index:
            revoked[key] = r
    candidates = [_candidate(r, keys, checkpoint_size, revoked) for r in releases]
    return ReleaseView(checkpoint_size, tuple(candidates), tuple(ignored))


def _candidate(
    r: LoggedRelease,
    keys: Sequence[ReleaseKey],
    size: int,
    revoked: Mapping[tuple[str, str], LoggedRevocation],
) -> Candidate:
    if r.index < 0 or r.index >= size:
        return Candidate(
            r.document,
            r.index,
            f"not in the log at the verified checkpoint (index {r.index}, checkpoint size {size})",
        )
    try:
        signer = r.document.verify(keys)
    except SignatureError as exc:
        return Candidate(r.document, r.index, str(exc))
    rev = revoked.get((r.document.digest, signer.key_id))
    if rev is not None:
        why = rev.document.revocation.reason
        return Candidate(r.document, r.index, f"revoked at log index {rev.index}: {why}")
    return Candidate(r.document, r.index)


def decide(claims: WorkerClaims, view: ReleaseView, now: datetime) -> Accepted:
    """The newest release (highest log index) that accepts the worker, or PolicyError."""
    reasons: list[str] = []
    for c in sorted(view.candidates, key=lambda c: -c.index):
        why = c.excluded or _refusal(claims, c.document.manifest, now)
        if isinstance(why, LaunchEntry):
            return Accepted(c.document.manifest, c.document.digest, c.index, why)
        reasons.append(f"{c.name}: {why}")
    checked = "; ".join(reasons) if reasons else "no release was supplied"
    raise PolicyError(
        f"no trusted release allows {claims.describe()} — releases checked: {checked}"
    )


def _refusal(claims: WorkerClaims, m: ReleaseManifest, now: datetime) -> str | LaunchEntry:
    """The launch entry that admits the worker, or why this release does not."""
    if now < m.not_before:
        return f"not valid before {m.not_before.isoformat()}"
    if now >= m.not_after:
        return f"expired at {m.not_after.isoformat()}"
    entry = _launch_entry(claims, m)
    if isinstance(entry, str):
        return entry
    problems = [*_gpu_problems(claims, m.gpu), *_model_problems(claims, m)]
    return "; ".join(problems) if problems else entry


def _launch_entry(claims: WorkerClaims, m: ReleaseManifest) -> str | LaunchEntry:
    listed = [
        e for e in m.launch if e.platform == claims.platform and e.measurement == claims.measurement
    ]
    if not listed:
        return "measurement not listed"
    shaped = [e for e in listed if claims.vcpus is None or e.vcpus == claims.vcpus]
    if not shaped:
        shapes = ", ".join(sorted(e.shape() for e in listed))
        return f"measurement listed only for {shapes}, not {claims.vcpus} vCPUs"
    for e in shaped:
        if all(i < len(claims.rtmrs) and claims.rtmrs[i] == v for i, v in e.rtmrs.items()):
            return e
    return "measurement listed, but the worker's RTMRs differ from the pinned ones"


def _gpu_problems(claims: WorkerClaims, ref: GpuReference | None) -> list[str]:
    if ref is None:
        return []
    out = (
        ["the release requires a GPU; the worker attests none"]
        if ref.required and not claims.gpus
        else []
    )
    for g in claims.gpus:
        if ref.driver_versions is not None and g.driver_version not in ref.driver_versions:
            out.append(f"GPU {g.index} driver {g.driver_version} not allowed")
        if ref.vbios_versions is not None and g.vbios_version not in ref.vbios_versions:
            out.append(f"GPU {g.index} VBIOS {g.vbios_version} not allowed")
        for idx, allowed in sorted(ref.measurements.items()):
            if g.measurements.get(idx) not in allowed:
                out.append(f"GPU {g.index} measurement {idx} not a golden value")
    return out


def _model_problems(claims: WorkerClaims, m: ReleaseManifest) -> list[str]:
    out: list[str] = []
    for name, digest in sorted(claims.models.items()):
        want = m.models.get(name)
        if want is None:
            out.append(f"model {name!r} is not in the release")
        elif want != digest.hex():
            out.append(
                f"model {name!r} has digest {digest.hex()[:16]}…, the release allows {want[:16]}…"
            )
    return out
