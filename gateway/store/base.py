"""The storage interface: ledger (accounts, holds, posted transfers) and receipts.

Rules every implementation keeps, in one transaction per call:
- hold(job): at most one hold per job id; refuses when available balance < amount;
- settle(job): exactly once per job id — the receipt is recorded, the hold released, the client
  debited `cost`, the provider credited `cost - fee`, the network credited `fee`; a second settle of
  the same job returns the first result with already_settled=True and moves no money;
- void(job): releases an unsettled hold; no-op otherwise;
- balances are sums of entries; no client balance goes below zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SettleResult:
    log_index: int
    already_settled: bool


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

    async def balance(self, account: str) -> tuple[int, int]: ...

    async def receipt(self, job_id: bytes) -> tuple[str, int] | None: ...

    async def close(self) -> None: ...
