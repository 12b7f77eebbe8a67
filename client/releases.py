"""Following released software through the gateway's log (ADR 10), for the SDK, the proxy and the
CLI: trust a release only if it is in a log checkpoint this client verified itself.

    follower = ReleaseFollower(ReleaseTrust(keys, log_identity))
    view = await follower.current(log_stub, call)     # cached for refresh_s
    policy = policy.with_releases(view)

Each refresh: GetReleases (the gateway signs a checkpoint covering every logged release) gives a
checkpoint; its signature must verify with the log key, and it must be consistent with the last
checkpoint this follower accepted (no rollback, no fork: verify.release.logview.advance); every
release and revocation entry must come with an inclusion proof leading to that checkpoint's root;
then verify.release.policy.release_view settles signatures and revocations. A gateway that shows
this client a release the log does not hold, or a forked log, fails here: ReleaseLogRejected.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ccgw.client.errors import ReleaseLogRejected
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc
from ccgw.verify import checkpoint, limits
from ccgw.verify import log_entries as le
from ccgw.verify.checkpoint import Checkpoint
from ccgw.verify.errors import VerifyError
from ccgw.verify.release import logview
from ccgw.verify.release.manifest import ReleaseKey
from ccgw.verify.release.policy import (
    LoggedRelease,
    LoggedRevocation,
    ReleaseView,
    release_view,
)

M = TypeVar("M")
Call = Callable[[Any, object, type[M]], Awaitable[M]]
_ENTRIES_MAX = limits.RELEASES_CONSIDERED_MAX + limits.REVOCATIONS_CONSIDERED_MAX


@dataclass(frozen=True)
class LogIdentity:
    """A log: its checkpoints' key name, raw Ed25519 public key and origin line."""

    name: str
    public_raw: bytes  # also the operator key that signs deposits and price schedules
    origin: str


@dataclass(frozen=True)
class ReleaseTrust:
    keys: tuple[ReleaseKey, ...]  # release keys whose releases this party trusts
    log: LogIdentity
    # Where the last checkpoint accepted is kept between runs (None: in memory only), so that a
    # log forked or rolled back between two runs is refused too.
    state_path: Path | None = None


def load_state(path: Path, log: LogIdentity) -> Checkpoint | None:
    """The checkpoint a follower accepted last (None when the file does not exist yet)."""
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        cp = Checkpoint(str(state["origin"]), int(state["size"]), bytes.fromhex(state["root"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"log state {path} is not a release follower's state file") from exc
    if cp.origin != log.origin or cp.size < 0 or len(cp.root) != 32:
        raise ValueError(f"log state {path} is for another log than {log.origin!r}")
    return cp


def save_state(path: Path, cp: Checkpoint) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"origin": cp.origin, "size": cp.size, "root": cp.root.hex()}))
    tmp.replace(path)


def proven_entries(
    cp: Checkpoint, pages: Sequence[lpb.GetReleasesResponse]
) -> tuple[list[LoggedRelease], list[LoggedRevocation]]:
    """The releases and revocations of GetReleases pages, each checked to be in `cp`'s tree."""
    releases: list[LoggedRelease] = []
    revocations: list[LoggedRevocation] = []
    last = -1
    for page in pages:
        if page.tree_size != cp.size:
            raise ReleaseLogRejected(
                f"the gateway serves releases of tree size {page.tree_size}, not {cp.size}"
            )
        for pe in page.entries:
            index = pe.entry.index
            if index <= last or index >= cp.size:
                raise ReleaseLogRejected(f"release entry index {index} is out of order or range")
            last = index
            entry = le.Entry(pe.entry.kind, bytes(pe.entry.body))
            if entry.kind not in (le.ReleaseBody.KIND, le.RevocationBody.KIND):
                raise ReleaseLogRejected(f"entry {index} of kind {entry.kind[:40]!r} is no release")
            try:
                logview.check_included(entry.leaf(), index, list(pe.hashes), cp)
                body = le.parse(entry)
            except VerifyError as exc:
                raise ReleaseLogRejected(
                    f"release entry {index} is not in the log the checkpoint of size {cp.size} "
                    f"signs: {exc}"
                ) from exc
            if isinstance(body, le.ReleaseBody):
                releases.append(LoggedRelease(body.document, index))
            elif isinstance(body, le.RevocationBody):
                revocations.append(LoggedRevocation(body.document, index))
    return releases, revocations


class ReleaseFollower:
    def __init__(
        self,
        trust: ReleaseTrust,
        refresh_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        last_seen: Checkpoint | None = None,
    ) -> None:
        if not trust.keys:
            raise ValueError("a release follower needs at least one release key")
        self.trust, self._refresh_s, self._clock = trust, refresh_s, clock
        if last_seen is None and trust.state_path is not None:
            last_seen = load_state(trust.state_path, trust.log)
        self.checkpoint: Checkpoint | None = last_seen  # the last checkpoint accepted
        self.view: ReleaseView | None = None
        self._until = float("-inf")

    async def current(self, stub: lgrpc.TransparencyLogStub, call: Call[Any]) -> ReleaseView:
        if self.view is not None and self._clock() < self._until:
            return self.view
        return await self.refresh(stub, call)

    async def refresh(self, stub: lgrpc.TransparencyLogStub, call: Call[Any]) -> ReleaseView:
        first = await call(
            stub.GetReleases, lpb.GetReleasesRequest(tree_size=0), lpb.GetReleasesResponse
        )
        cp = await self._advance(stub, call, first.checkpoint)
        pages = [first]
        while pages[-1].more:
            got = sum(len(p.entries) for p in pages)
            if got > _ENTRIES_MAX or not pages[-1].entries:
                raise ReleaseLogRejected("the gateway's release pages do not end or advance")
            req = lpb.GetReleasesRequest(
                tree_size=cp.size, start_index=pages[-1].entries[-1].entry.index + 1
            )
            pages.append(await call(stub.GetReleases, req, lpb.GetReleasesResponse))
        releases, revocations = proven_entries(cp, pages)
        try:
            view = release_view(releases, revocations, self.trust.keys, cp.size)
        except VerifyError as exc:
            raise ReleaseLogRejected(f"the log's releases are refused: {exc}") from exc
        self.checkpoint, self.view = cp, view
        if self.trust.state_path is not None:
            save_state(self.trust.state_path, cp)
        self._until = self._clock() + self._refresh_s
        return view

    async def _advance(
        self, stub: lgrpc.TransparencyLogStub, call: Call[Any], text: str
    ) -> Checkpoint:
        log = self.trust.log
        prev = self.checkpoint
        try:
            size = checkpoint.parse(text)[0].size
            proof: list[bytes] = []
            if prev is not None and 0 < prev.size < size:
                resp = await call(
                    stub.GetConsistencyProof,
                    lpb.GetConsistencyProofRequest(first=prev.size, second=size),
                    lpb.GetConsistencyProofResponse,
                )
                proof = list(resp.hashes)
            return logview.advance(prev, text, log.name, log.public_raw, proof, log.origin)
        except VerifyError as exc:
            raise ReleaseLogRejected(f"the log's checkpoint is refused: {exc}") from exc
