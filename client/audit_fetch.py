"""The auditor's side of the wire: every call bounded (a deadline each, a cap on their number),
every page checked to advance and to stay within what was asked. A gateway that does not answer,
answers what does not parse, or pages that never advance stops the audit with a named problem
(AuditStop), never a traceback or a hang."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from ccgw.client.errors import ClientError
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc
from ccgw.verify import limits as vlimits

T = TypeVar("T")
_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass(frozen=True)
class AuditLimits:
    page_entries: int = 256  # entries / postings / accounts asked per call
    rpc_deadline_s: float = 30.0  # each call
    rpc_calls_max: int = 2_000_000  # the whole audit
    entries_max: int = 50_000_000  # entries read (checkpointed and past it)
    accounts_max: int = 1_000_000
    evidence_bundles_max: int = 10_000  # distinct bundles fetched
    problems_max: int = 1_000  # problems listed; more are counted


class AuditStop(ClientError):
    """The audit cannot go on: `kind` is gateway_unreachable, gateway_misbehaving or
    audit_limit."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


class Fetcher:
    def __init__(self, stub: lgrpc.TransparencyLogStub, limits: AuditLimits) -> None:
        self.stub, self.limits = stub, limits
        self.calls = 0

    async def call(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        what: str,
        expected: frozenset[grpc.StatusCode] = frozenset(),
    ) -> T | None:
        """The response, or None for a status in `expected`; AuditStop for anything else."""
        self.calls += 1
        if self.calls > self.limits.rpc_calls_max:
            raise AuditStop("audit_limit", f"more than {self.limits.rpc_calls_max} calls")
        try:
            resp = await method(request, timeout=self.limits.rpc_deadline_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in expected:
                return None
            kind = "gateway_unreachable" if exc.code() in _UNREACHABLE else "gateway_misbehaving"
            raise AuditStop(
                kind, f"{what}: {exc.code().name} {(exc.details() or '')[:200]}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - whatever a broken answer raises is misbehaviour
            raise AuditStop("gateway_misbehaving", f"{what}: {type(exc).__name__}") from None
        if resp is None:
            raise AuditStop("gateway_misbehaving", f"{what}: an answer that does not parse")
        return resp

    async def entries(self, start: int, end: int) -> list[lpb.LogEntry]:
        resp = await self.call(
            self.stub.GetEntries, lpb.GetEntriesRequest(start=start, end=end), "GetEntries"
        )
        assert resp is not None
        if len(resp.entries) > end - start or any(not start <= e.index < end for e in resp.entries):
            raise AuditStop(
                "gateway_misbehaving", f"GetEntries [{start}, {end}) answered outside the range"
            )
        return list(resp.entries)

    async def account_pages(self) -> list[tuple[str, bool, lpb.GetAccountsResponse]]:
        """Every page of balances: (after, full page?, response); names must advance."""
        pages, after, seen = [], "", 0
        while True:
            req = lpb.GetAccountsRequest(after=after, limit=self.limits.page_entries)
            resp = await self.call(self.stub.GetAccounts, req, "GetAccounts")
            assert resp is not None
            names = [a.account for a in resp.accounts]
            if (
                len(names) > self.limits.page_entries
                or names != sorted(set(names))
                or (names and names[0] <= after)
            ):
                raise AuditStop("gateway_misbehaving", "GetAccounts pages do not advance in order")
            full = len(names) == self.limits.page_entries
            pages.append((after, full, resp))
            seen += len(names)
            if seen > self.limits.accounts_max:
                raise AuditStop("audit_limit", f"more than {self.limits.accounts_max} accounts")
            if not full:
                return pages
            after = names[-1]


class LedgerCursor:
    """The ledger view's postings in seq order, fetched a page at a time as the replay needs
    them: memory stays one page however long the ledger is."""

    def __init__(self, fetcher: Fetcher) -> None:
        self._f = fetcher
        self._buf: deque[lpb.LedgerEntry] = deque()
        self._after = 0
        self._done = False
        self.read = 0

    async def _fill(self) -> None:
        limit = self._f.limits.page_entries
        req = lpb.GetLedgerRequest(after_seq=self._after, limit=limit)
        resp = await self._f.call(self._f.stub.GetLedger, req, "GetLedger")
        assert resp is not None
        seqs = [p.seq for p in resp.entries]
        if len(seqs) > limit or any(
            b <= a for a, b in zip([self._after, *seqs], seqs, strict=False)
        ):
            raise AuditStop("gateway_misbehaving", "GetLedger pages do not advance in seq order")
        if not seqs:
            self._done = True
            return
        self._after = seqs[-1]
        self._buf.extend(resp.entries)
        self.read += len(seqs)
        if self.read > self._f.limits.entries_max * vlimits.TRANSFER_LEGS_MAX:
            raise AuditStop("audit_limit", "the ledger has more postings than entries allow")

    async def upto(self, index: int) -> list[lpb.LedgerEntry]:
        """The postings (in order) up to the first one caused by an entry after `index`."""
        out: list[lpb.LedgerEntry] = []
        while True:
            if not self._buf:
                if self._done:
                    return out
                await self._fill()
                continue
            if self._buf[0].log_index > index:
                return out
            out.append(self._buf.popleft())

    async def peek(self) -> lpb.LedgerEntry | None:
        if not self._buf and not self._done:
            await self._fill()
        return self._buf[0] if self._buf else None
