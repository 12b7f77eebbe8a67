"""The storage interface: ledger (accounts, holds, posted transfers) and receipts.

Rules every implementation keeps, in one transaction per call:
- hold(job): at most one hold per job id; refuses when available balance < amount;
- settle(job): exactly once per job id — the receipt is recorded, the hold released, the client
  debited `cost`, the provider credited `cost - fee`, the network credited `fee`; a second settle of
  the same job returns the first result with already_settled=True and moves no money;
- void(job): releases an unsettled hold; no-op otherwise;
- balances are sums of entries; no client balance goes below zero;
- the log is append-only and totally ordered: settle assigns the next leaf index, stores the leaf
  hash (verify.merkle.leaf_hash(receipt_leaf(jws, evidence))) and the transfers atomically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SettleResult:
    log_index: int
    already_settled: bool


@dataclass(frozen=True)
class LogEntry:
    index: int
    receipt_jws: str
    evidence_sha256: str


@dataclass(frozen=True)
class LedgerEntry:
    seq: int  # order of posting
    transfer_id: str
    kind: str  # deposit | withdrawal | reward
    job_id: str  # hex, "" when not a reward
    account: str
    amount_micro: int  # positive = credit


class Store(Protocol):
    async def deposit(self, account: str, amount_micro: int, transfer_id: str) -> None: ...

    async def withdraw(self, account: str, amount_micro: int, transfer_id: str) -> None: ...

    async def hold(self, job_id: bytes, account: str, amount_micro: int) -> None: ...

    async def settle(
        self,
        job_id: bytes,
        *,
        receipt_jws: str,
        provider_account: str,
        client_account: str,
        cost_micro: int,
        fee_micro: int,
        evidence_sha256: str,
    ) -> SettleResult: ...

    async def void(self, job_id: bytes) -> None: ...

    async def release_orphaned_holds(self) -> int:
        """At start-up: void holds of jobs that were in flight when this gateway stopped (their
        streams died with it). Returns how many were released."""
        ...

    async def balance(self, account: str) -> tuple[int, int]: ...

    async def receipt(self, job_id: bytes) -> tuple[str, int] | None: ...

    async def close(self) -> None: ...

    # -- transparency log (leaves are appended by settle, in the same transaction) ------------
    async def log_size(self) -> int: ...

    async def leaf_hashes(self, size: int) -> list[bytes]: ...

    async def entries(self, start: int, end: int) -> list[LogEntry]: ...

    async def add_checkpoint(self, size: int, text: str) -> None: ...

    async def latest_checkpoint(self) -> tuple[int, str] | None: ...

    async def add_evidence(self, digest: str, bundle: bytes) -> None: ...

    async def evidence(self, digest: str) -> bytes | None: ...

    # -- ledger listing (for auditors) ---------------------------------------------------------
    async def ledger(self, start: int, end: int) -> list[LedgerEntry]:
        """At most end - start entries with seq > start, in order (seqs may have gaps)."""
        ...
