"""The auditor's replay, pure: every entry through the ledger rules (verify.ledger_rules) into an
in-memory view, the tree over the checkpointed entries, and every posting and balance the gateway
serves compared with what the entries give. Each difference is a problem named after the rule it
breaks; nothing here trusts the gateway."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.verify import ledger_rules, merkle
from ccgw.verify import log_entries as le
from ccgw.verify.ledger_rules import EXTERNAL, TRANSFER_KINDS, Effects, MemoryLedger, RuleViolation

# (seq, transfer id, kind, job id, account, amount): one posting, as derived or as served
Posting = tuple[int, str, str, str, str, int]


class Problems(Protocol):
    def add(self, kind: str, detail: str, evidence: dict[str, Any] | None = None) -> None: ...


def _served(p: lpb.LedgerEntry) -> Posting:
    return (p.seq, p.transfer_id, p.kind, p.job_id, p.account, p.amount_micro)


def _by_transfer(ps: Sequence[Posting]) -> dict[str, list[Posting]]:
    out: dict[str, list[Posting]] = defaultdict(list)
    for p in ps:
        out[p[1]].append(p)
    return out


def _legs(ps: list[Posting]) -> list[tuple[str, str, str, int]]:
    return sorted((p[2], p[3], p[4], p[5]) for p in ps)


class Replay:
    def __init__(
        self,
        operator: bytes,
        anchored_size: int,
        account_pages: list[tuple[str, bool, lpb.GetAccountsResponse]],
        problems: Problems,
    ) -> None:
        self.ledger = MemoryLedger(operator)
        self.frontier = merkle.Frontier()
        self.anchored_size = anchored_size
        self.anchored_root = merkle.root([]) if anchored_size == 0 else b""
        self.count = 0  # entries replayed
        self._p = problems
        self._derived_reward: dict[str, int] = {}  # job -> index of its receipt
        self._served_reward: dict[str, int] = {}  # job -> index of the first served reward
        self._pages = sorted(account_pages, key=lambda pg: pg[2].log_size)
        self._gaps: list[tuple[int, int]] = []
        self._orphans: list[tuple[str, str, int]] = []  # reward postings with no receipt (yet)
        self._check_pages(0)

    # -- entries ---------------------------------------------------------------------------

    def entry(self, index: int, e: lpb.LogEntry, receipt_ok: bool) -> list[Posting]:
        """Replay entry `index`; returns the postings it causes. `receipt_ok` is False for a
        receipt whose signature or evidence did not verify (it then causes nothing)."""
        entry = le.Entry(e.kind, bytes(e.body))
        if index < self.anchored_size:
            self.frontier.append(entry.leaf_hash())
            if self.frontier.size == self.anchored_size:
                self.anchored_root = self.frontier.root()
        self.count = index + 1
        effects = Effects()
        if receipt_ok:
            try:
                effects = ledger_rules.apply(entry, index, self.ledger)
            except RuleViolation as exc:
                self._p.add(exc.problem, str(exc), {"index": index, "kind": e.kind[:40]})
        self.ledger.record(effects, index)
        for t in effects.transfers:
            if t.kind == "reward":
                self._derived_reward[t.job_id] = index
        self._check_pages(self.count)
        return [
            (ledger_rules.seq(index, leg), tid, kind, job, acct, amount)
            for leg, tid, kind, job, acct, amount in ledger_rules.postings(index, effects)
        ]

    # -- postings ----------------------------------------------------------------------------

    def compare(
        self, index: int, derived: list[Posting], served_rows: list[lpb.LedgerEntry]
    ) -> None:
        """The postings the gateway serves for entry `index` against those the entry causes."""
        early = [p for p in served_rows if p.log_index != index]
        self.stray([p for p in early if self._missing(p.log_index)], index)
        for p in early:
            if not self._missing(p.log_index):
                self._p.add(
                    "ledger_out_of_order",
                    f"posting {p.seq} names entry {p.log_index}, served among entry {index}'s",
                )
        served = [_served(p) for p in served_rows if p.log_index == index]
        if served == derived:
            self._note_served_rewards(index, served)
            return
        want, got = _by_transfer(derived), _by_transfer(served)
        for tid, ps in got.items():
            self._served_transfer(index, tid, ps, want.get(tid))
        for tid, ps in want.items():
            if tid not in got:
                kind = "reward_missing" if ps[0][2] == "reward" else "transfer_missing"
                self._p.add(kind, f"entry {index} causes {tid}, which the ledger does not show")
        if sorted(p[1:] for p in served) == sorted(p[1:] for p in derived):
            self._p.add("ledger_out_of_order", f"entry {index}'s postings are out of order")
        self._note_served_rewards(index, served)

    def _served_transfer(
        self, index: int, tid: str, ps: list[Posting], want: list[Posting] | None
    ) -> None:
        kinds = {p[2] for p in ps}
        if kinds - TRANSFER_KINDS:
            self._p.add("unknown_transfer_kind", f"transfer {tid} at {index} is of {sorted(kinds)}")
        if sum(p[5] for p in ps) != 0:
            self._p.add("unbalanced_transfer", f"transfer {tid} at {index} does not sum to zero")
        if want is None:
            job = ps[0][3]
            if "reward" not in kinds:
                self._p.add("transfer_without_entry", f"transfer {tid} at {index} has no entry")
            elif job in self._served_reward or job in self._derived_reward:
                self._p.add("job_credited_twice", f"job {job} rewarded again by {tid} at {index}")
            else:  # named at the end: its receipt may still come later in the log
                self._orphans.append((job, tid, index))
        elif _legs(ps) != _legs(want):
            kind = "reward_mismatch" if want[0][2] == "reward" else "transfer_mismatch"
            self._p.add(
                kind,
                f"entry {index}: ledger {[(p[4], p[5]) for p in ps]} but the entry gives "
                f"{[(p[4], p[5]) for p in want]}",
                {"transfer": tid},
            )

    def _note_served_rewards(self, index: int, served: list[Posting]) -> None:
        for p in served:
            if p[2] == "reward" and p[3]:
                self._served_reward.setdefault(p[3], index)

    def gap(self, start: int, end: int) -> None:
        """Entries [start, end) were not served."""
        self._gaps.append((start, end))

    def _missing(self, index: int) -> bool:
        return any(a <= index < b for a, b in self._gaps)

    def stray(self, rows: list[lpb.LedgerEntry], where: int) -> None:
        """Postings that name entries the log does not serve."""
        for p in rows:
            kind = "reward_without_receipt" if p.kind == "reward" else "transfer_without_entry"
            self._p.add(kind, f"posting {p.seq} names entry {p.log_index}, which is not served")

    # -- balances ----------------------------------------------------------------------------

    def _check_pages(self, count: int) -> None:
        while self._pages and self._pages[0][2].log_size == count:
            after, full, resp = self._pages.pop(0)
            self._check_page(after, full, resp)

    def _check_page(self, after: str, full: bool, resp: lpb.GetAccountsResponse) -> None:
        served = {a.account: a.balance_micro for a in resp.accounts}
        for acct, bal in served.items():
            if acct not in self.ledger.balances:
                self._p.add(
                    "balance_mismatch",
                    f"{acct} is served at {bal}; no entry of the first {resp.log_size} moves it",
                )
            elif bal != self.ledger.balance(acct):
                self._p.add(
                    "balance_mismatch",
                    f"{acct} is served at {bal}; after {resp.log_size} entries the log gives "
                    f"{self.ledger.balance(acct)}",
                )
        names = sorted(self.ledger.balances)
        lo = bisect.bisect_right(names, after)
        hi = bisect.bisect_right(names, max(served)) if full and served else len(names)
        for acct in names[lo:hi]:
            if acct not in served:
                self._p.add(
                    "balance_missing",
                    f"{acct} ({self.ledger.balance(acct)} after {resp.log_size} entries) "
                    "is not among the balances served",
                )

    def finish(self, root_check: Callable[[bytes, int], None]) -> None:
        for _, _, resp in self._pages:
            self._p.add(
                "balance_mismatch",
                f"balances are served as of {resp.log_size} entries; the log has {self.count}",
            )
        self._pages.clear()
        for job, tid, index in self._orphans:
            if job in self._derived_reward:
                self._p.add("job_credited_twice", f"job {job} rewarded again by {tid} at {index}")
            else:
                self._p.add("reward_without_receipt", f"{tid} at {index} has no verified receipt")
        root_check(self.anchored_root, self.frontier.size)
        if ledger_rules.total(self.ledger.balances) != 0:
            self._p.add("balances_do_not_sum_to_zero", "the log's balances do not sum to zero")
        for acct, bal in self.ledger.balances.items():
            if acct != EXTERNAL and bal < 0:
                self._p.add("negative_balance", f"{acct} is at {bal}")
