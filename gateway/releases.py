"""The gateway's side of released software (ADR 10): the release keys it trusts, the release view
of its own log (re-read after each publication and every `release_refresh_s`, so that replicas on
one database follow each other), and publication of signed documents.

Admission and every re-challenge verify evidence against `policy(base)`: a worker whose release is
revoked passes until its next re-challenge, then it is evicted (gateway.worker_link). The gateway
reads its own store, so it needs no checkpoint of its own log; clients and auditors do (client/
releases.py, client/audit.py)."""

from __future__ import annotations

import asyncio
import dataclasses

import structlog

from ccgw.gateway.errors import BadRequest, PermissionDenied
from ccgw.gateway.store.base import AppendResult, Store
from ccgw.verify import log_entries as le
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.errors import SignatureError, VerifyError
from ccgw.verify.release.manifest import (
    ReleaseKey,
    SignedManifest,
    SignedRevocation,
    load_release_key,
    parse_document,
)
from ccgw.verify.release.policy import (
    LoggedRelease,
    LoggedRevocation,
    ReleaseView,
    release_view,
)

log = structlog.get_logger("gateway.releases")


@dataclasses.dataclass(frozen=True)
class Published:
    result: AppendResult
    kind: str
    digest: str  # the release's digest (the revoked release's, for a revocation)


def load_keys(pems: tuple[bytes, ...]) -> tuple[ReleaseKey, ...]:
    keys = []
    for pem in pems:
        try:
            keys.append(load_release_key(pem))
        except VerifyError as exc:
            raise ValueError(f"release key: {exc}") from None
    return tuple(keys)


def logged(
    rows: list[tuple[int, le.Entry]],
) -> tuple[list[LoggedRelease], list[LoggedRevocation]]:
    """Releases and revocations of (index, entry) rows; entries of other kinds are ignored."""
    releases, revocations = [], []
    for index, entry in rows:
        body = le.parse(entry)
        if isinstance(body, le.ReleaseBody):
            releases.append(LoggedRelease(body.document, index))
        elif isinstance(body, le.RevocationBody):
            revocations.append(LoggedRevocation(body.document, index))
    return releases, revocations


class GatewayReleases:
    def __init__(self, keys: tuple[ReleaseKey, ...], accept_unreleased: bool, page: int) -> None:
        self.keys, self.accept_unreleased, self._page = keys, accept_unreleased, page
        self.view: ReleaseView | None = ReleaseView(0) if keys else None

    def policy(self, base: Policy) -> Policy:
        """`base` following the current releases (or accepting unreleased software, loudly)."""
        if self.view is not None:
            return base.with_releases(self.view)
        if self.accept_unreleased:
            return dataclasses.replace(base, accept_unreleased=True)
        return base

    async def refresh(self, store: Store) -> ReleaseView | None:
        if not self.keys:
            return None
        size = await store.log_size()
        rows: list[tuple[int, le.Entry]] = []
        after = 0
        while True:
            page = await store.release_entries(after, self._page)
            rows += [(e.index, e.entry) for e in page if e.index < size]
            if len(page) < self._page:
                break
            after = page[-1].index + 1
        releases, revocations = logged(rows)
        self.view = release_view(releases, revocations, self.keys, size)
        return self.view

    async def run(self, store: Store, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh(store)
            except Exception as exc:  # noqa: BLE001 - keep the last view; say why
                log.warning("release_refresh_failed", error=type(exc).__name__)

    async def publish(self, store: Store, document: bytes) -> Published:
        """Log a signed manifest or revocation: it must parse and be signed by a release key of
        this gateway (a revocation: by the key that signed a logged release)."""
        if not self.keys:
            raise PermissionDenied("this gateway has no release key (start it with --release-key)")
        try:
            doc = parse_document(document)
        except VerifyError as exc:
            raise BadRequest(f"the document does not parse: {exc}") from None
        try:
            doc.verify(self.keys)
        except SignatureError as exc:
            raise PermissionDenied(str(exc)) from None
        try:
            entry = le.release_entry(doc)
        except VerifyError as exc:
            raise BadRequest(f"the document cannot be logged: {exc}") from None
        result = await store.append(entry)
        await self.refresh(store)
        if isinstance(doc, SignedManifest):
            kind, digest = le.ReleaseBody.KIND, doc.digest
        else:
            assert isinstance(doc, SignedRevocation)
            kind, digest = le.RevocationBody.KIND, doc.revocation.release
        log.info(
            "release_published",
            kind=kind,
            digest=digest,
            log_index=result.log_index,
            already_logged=result.already_logged,
        )
        return Published(result, kind, digest)
