"""The storage contract of a gateway (ADR 12): the append-only log of typed entries, the ledger view
derived from it, and the gateway-side hold reservations.

Rules every implementation keeps, each call one transaction:
- the log is append-only and totally ordered; an entry, its Merkle nodes, the ledger postings and
  running balances it causes (verify.ledger_rules.apply) are written together or not at all;
  appending an entry identical to a logged one returns the logged index (idempotent);
- hold(job): at most one pending hold per job id; refused when the account's available balance
  (balance - held) is below the amount. A hold is a reservation, not a money movement;
- settle(job): appends the job's receipt entry exactly once: the hold is marked posted and released,
  the reward the rules give at that index is posted; a second settle of the job returns the first
  result with already_settled=True and moves nothing. The reward may exceed the hold only when the
  client's available balance covers the difference;
- void(job): releases a pending hold; nothing moves; no-op otherwise;
- append(entry): deposits, withdrawals, price schedules, account keys (and kinds added later),
  each checked by the rules (signatures included) before it is logged;
- balances are running totals per account, never sums over history; every read or write costs
  O(log n) in the size of the log; roots and proofs come from stored Merkle nodes;
- the ledger tables can be rebuilt from the log entries alone (rebuild_view).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ccgw.verify.log_entries import Entry
from ccgw.verify.prices import PriceSchedule


@dataclass(frozen=True)
class SettleResult:
    log_index: int
    already_settled: bool
    cost_micro: int = 0  # what this call posted (0 when already settled)
    fee_micro: int = 0


@dataclass(frozen=True)
class AppendResult:
    log_index: int
    already_logged: bool


@dataclass(frozen=True)
class LogEntry:
    index: int
    kind: str
    body: bytes

    @property
    def entry(self) -> Entry:
        return Entry(self.kind, self.body)


@dataclass(frozen=True)
class LedgerEntry:
    """One posting of the ledger view: a leg of a transfer caused by the entry at log_index."""

    seq: int  # log_index * TRANSFER_LEGS_MAX + leg number + 1: the view's order
    log_index: int
    transfer_id: str
    kind: str  # reward | deposit | withdrawal
    job_id: str  # hex, "" when not a reward
    account: str
    amount_micro: int  # positive = credit


@dataclass(frozen=True)
class AccountRow:
    account: str
    balance_micro: int  # from the log
    held_micro: int  # pending holds (gateway-side reservations)


class Store(Protocol):
    # -- reservations (gateway-side, not logged) ----------------------------------------------
    async def hold(self, job_id: bytes, account: str, amount_micro: int) -> None: ...

    async def void(self, job_id: bytes) -> None: ...

    async def release_orphaned_holds(self) -> int:
        """At start-up: void holds of jobs that were in flight when this gateway stopped (their
        streams died with it). Returns how many were released."""
        ...

    # -- appends --------------------------------------------------------------------------------
    async def settle(
        self, job_id: bytes, *, receipt_jws: str, evidence_sha256: str
    ) -> SettleResult:
        """Append the receipt the gateway verified; the reward follows from the rules."""
        ...

    async def append(self, entry: Entry) -> AppendResult: ...

    async def ensure_schedule(self, entry_at: Callable[[int], Entry]) -> bool:
        """If the log has no price schedule yet, append entry_at(the next index) (a schedule in
        force from that index); True if it did."""
        ...

    def current_schedule(self) -> PriceSchedule:
        """The schedule in force at the log's head as last seen by this process (for holds)."""
        ...

    # -- reads ----------------------------------------------------------------------------------
    async def balance(self, account: str) -> tuple[int, int]:
        """(available = balance - held, held)."""
        ...

    async def receipt(self, job_id: bytes) -> tuple[str, int] | None: ...

    async def release_entries(self, after: int, limit: int) -> list[LogEntry]:
        """Release and revocation entries at log indexes >= `after`, in order, at most `limit`."""
        ...

    async def log_size(self) -> int: ...

    async def log_head(self) -> tuple[int, bytes]:
        """(size, root) of the whole log, from the stored frontier."""
        ...

    async def entries(self, start: int, end: int) -> list[LogEntry]: ...

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]: ...

    async def consistency_proof(self, first: int, second: int) -> list[bytes]: ...

    async def add_checkpoint(self, size: int, text: str) -> None: ...

    async def latest_checkpoint(self) -> tuple[int, str] | None: ...

    async def checkpoint(self, size: int) -> str | None: ...

    async def add_evidence(self, digest: str, bundle: bytes) -> None: ...

    async def evidence(self, digest: str) -> bytes | None: ...

    async def ledger(self, after_seq: int, limit: int) -> list[LedgerEntry]:
        """At most `limit` postings with seq > after_seq, in order (seqs have gaps)."""
        ...

    async def accounts(self, after: str, limit: int) -> tuple[int, list[AccountRow]]:
        """(log size, at most `limit` accounts named after `after`, by name), one snapshot."""
        ...

    async def unique_keys(self, namespace: str) -> list[str]:
        """Every key taken in `namespace` (e.g. the workers disputes suspended), in log order."""
        ...

    async def account_key_entries(self, account: str) -> list[int]:
        """Log indexes of the account's account_key entries, in order."""
        ...

    async def schedules(self) -> list[PriceSchedule]:
        """Every price schedule in the log, in log order."""
        ...

    async def rebuild_view(self) -> int:
        """Recompute the ledger view and the Merkle nodes from the log entries alone (admin, with
        the gateway stopped); returns the number of entries replayed."""
        ...

    async def close(self) -> None: ...
