"""The auditor: recompute everything from the gateway's public log and ledger, trusting none of it.

Checks, each reported by name with its evidence:
  checkpoint_signature   the latest checkpoint is signed by the log key the auditor was given
  history_rewritten      the new checkpoint is not consistent with the last one this auditor saw
                         (state kept in a local file), or the log shrank
  log_root_mismatch      the entries served do not hash to the checkpoint's root (dropped,
                         inserted or altered entries)
  forged_receipt         a receipt that does not verify with the key its evidence attests, or
                         evidence that does not verify / does not match its digest
  job_logged_twice       the same job id appears in two leaves
  unbalanced_transfer    a transfer whose entries do not sum to zero
  reward_without_receipt a reward transfer for a job that has no receipt in the log
  job_credited_twice     more than one reward transfer for one job
  reward_mismatch        amounts or accounts that do not follow from the receipt and the prices
  negative_balance       an account other than `external` below zero
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc
from ccgw.verify import binding, checkpoint, merkle
from ccgw.verify.attestation.bundle import VerifiedWorker, verify_bundle
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.errors import LogError, VerifyError
from ccgw.verify.ledger_rules import cost_micro, fee_micro
from ccgw.verify.receipts import Receipt, verify_receipt

PAGE = 256
TAIL_ENTRIES_MAX = 100_000  # entries read past the latest checkpoint
EXTERNAL = "external"


@dataclass(frozen=True)
class Problem:
    kind: str
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    tree_size: int = 0
    root: str = ""
    receipts_verified: int = 0
    unanchored: int = 0  # valid receipts after the latest checkpoint (anchored by a later audit)
    ledger_entries: int = 0
    balances: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class LogIdentity:
    name: str
    public_raw: bytes
    origin: str


@dataclass(frozen=True)
class Pricing:
    input_per_1k_micro: int = 1_000
    output_per_1k_micro: int = 2_000
    fee_bps: int = 500
    network_account: str = "network:fee"


class Auditor:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        log_id: LogIdentity,
        policy: Policy,
        roots: RootStore,
        pricing: Pricing = Pricing(),
        state_path: Path | None = None,
    ) -> None:
        self._stub = lgrpc.TransparencyLogStub(channel)
        self._id, self._roots, self._pricing = log_id, roots, pricing
        # Evidence is judged as of its own issue time: an audit runs long after admission.
        self._policy = replace(policy, max_evidence_age_s=10**9)
        self._state_path = state_path

    async def run(self) -> Report:
        rep = Report()
        try:
            cp_text = (await self._stub.GetCheckpoint(lpb.GetCheckpointRequest())).checkpoint
            cp = checkpoint.verify(cp_text, self._id.name, self._id.public_raw, self._id.origin)
        except LogError as exc:
            rep.problems.append(Problem("checkpoint_signature", str(exc)))
            return rep
        rep.tree_size, rep.root = cp.size, cp.root.hex()
        await self._check_consistency(cp, cp_text, rep)
        receipts = await self._check_entries(cp, rep)
        await self._check_ledger(receipts, rep)
        if rep.ok and self._state_path is not None:
            self._state_path.write_text(
                json.dumps({"size": cp.size, "root": cp.root.hex(), "checkpoint": cp_text})
            )
        return rep

    async def _check_consistency(
        self, cp: checkpoint.Checkpoint, cp_text: str, rep: Report
    ) -> None:
        if self._state_path is None or not self._state_path.exists():
            return
        last = json.loads(self._state_path.read_text())
        ev = {"previous_checkpoint": last["checkpoint"], "new_checkpoint": cp_text}
        if cp.size < last["size"]:
            rep.problems.append(Problem("history_rewritten", "the log shrank", ev))
            return
        try:
            proof: Iterable[bytes] = []
            if last["size"] and cp.size != last["size"]:
                resp = await self._stub.GetConsistencyProof(
                    lpb.GetConsistencyProofRequest(first=last["size"], second=cp.size)
                )
                proof = list(resp.hashes)
            if last["size"]:
                merkle.verify_consistency(
                    last["size"], cp.size, bytes.fromhex(last["root"]), cp.root, list(proof)
                )
        except (LogError, grpc.aio.AioRpcError) as exc:
            rep.problems.append(Problem("history_rewritten", str(exc), ev))

    async def _check_entries(self, cp: checkpoint.Checkpoint, rep: Report) -> dict[str, Receipt]:
        leaves: list[bytes] = []
        receipts: dict[str, Receipt] = {}
        workers: dict[str, VerifiedWorker | None] = {}
        for start in range(0, cp.size, PAGE):
            end = min(start + PAGE, cp.size)
            resp = await self._stub.GetEntries(lpb.GetEntriesRequest(start=start, end=end))
            for want, e in zip(range(start, end), resp.entries, strict=False):
                if e.index != want:
                    rep.problems.append(
                        Problem(
                            "log_root_mismatch", f"entry {want} is missing", {"got_index": e.index}
                        )
                    )
                leaves.append(
                    merkle.leaf_hash(merkle.receipt_leaf(e.receipt_jws, e.evidence_sha256))
                )
                r = await self._check_receipt(e, workers, rep)
                if r is None:
                    continue
                if r.job_id in receipts:
                    rep.problems.append(
                        Problem(
                            "job_logged_twice",
                            f"job {r.job_id} is in two leaves",
                            {"index": e.index},
                        )
                    )
                receipts[r.job_id] = r
                rep.receipts_verified += 1
        # The log runs ahead of its last checkpoint: rewards for those jobs are backed by receipts
        # verified here, and a later audit anchors them (consistency + root).
        start = cp.size
        while start < cp.size + TAIL_ENTRIES_MAX:
            resp = await self._stub.GetEntries(lpb.GetEntriesRequest(start=start, end=start + PAGE))
            if not resp.entries:
                break
            for e in resp.entries:
                r = await self._check_receipt(e, workers, rep)
                if r is not None and r.job_id not in receipts:
                    receipts[r.job_id] = r
                    rep.unanchored += 1
            start += len(resp.entries)
        if len(leaves) != cp.size or merkle.root(leaves) != cp.root:
            rep.problems.append(
                Problem(
                    "log_root_mismatch",
                    f"{len(leaves)} entries served hash to {merkle.root(leaves).hex()}, "
                    f"checkpoint says {cp.size} entries with root {cp.root.hex()}",
                )
            )
        return receipts

    async def _check_receipt(
        self, e: lpb.LogEntry, workers: dict[str, VerifiedWorker | None], rep: Report
    ) -> Receipt | None:
        ev = {"index": e.index, "receipt_jws": e.receipt_jws, "evidence_sha256": e.evidence_sha256}
        if e.evidence_sha256 not in workers:
            workers[e.evidence_sha256] = await self._worker(e.evidence_sha256)
        w = workers[e.evidence_sha256]
        if w is None:
            rep.problems.append(
                Problem(
                    "forged_receipt", "the receipt's evidence is missing or does not verify", ev
                )
            )
            return None
        try:
            r = verify_receipt(e.receipt_jws, w.keys.receipt_ed25519, w.key_id)
        except VerifyError as exc:
            rep.problems.append(Problem("forged_receipt", str(exc), ev))
            return None
        if (
            r.evidence_sha256 != e.evidence_sha256
            or w.models.get(r.model, b"").hex() != r.model_digest
        ):
            rep.problems.append(
                Problem("forged_receipt", "receipt does not match its evidence", ev)
            )
            return None
        return r

    async def _worker(self, digest: str) -> VerifiedWorker | None:
        try:
            raw = (
                await self._stub.GetEvidence(lpb.GetEvidenceRequest(evidence_sha256=digest))
            ).bundle
            bundle = cpb.EvidenceBundle.FromString(raw)
            if binding.evidence_sha256(bundle) != digest:
                return None
            when = dt.datetime.fromtimestamp(bundle.issued_at_ms / 1000, dt.UTC)
            return verify_bundle(bundle, self._policy, self._roots, when)
        except (grpc.aio.AioRpcError, VerifyError, ValueError):
            return None

    async def _check_ledger(self, receipts: dict[str, Receipt], rep: Report) -> None:
        transfers: dict[str, list[lpb.LedgerEntry]] = defaultdict(list)
        after = 0
        while True:
            resp = await self._stub.GetLedger(lpb.GetLedgerRequest(after_seq=after, limit=PAGE))
            if not resp.entries:
                break
            for le in resp.entries:
                transfers[le.transfer_id].append(le)
                rep.balances[le.account] = rep.balances.get(le.account, 0) + le.amount_micro
                rep.ledger_entries += 1
            after = resp.entries[-1].seq
        rewarded: dict[str, str] = {}
        p = self._pricing
        for tid, legs in transfers.items():
            if sum(le.amount_micro for le in legs) != 0:
                rep.problems.append(
                    Problem("unbalanced_transfer", f"transfer {tid} does not sum to zero")
                )
            if legs[0].kind != "reward":
                continue
            job = legs[0].job_id
            if job in rewarded:
                rep.problems.append(
                    Problem(
                        "job_credited_twice", f"job {job} rewarded by {rewarded[job]} and {tid}"
                    )
                )
                continue
            rewarded[job] = tid
            r = receipts.get(job)
            if r is None:
                rep.problems.append(
                    Problem(
                        "reward_without_receipt",
                        f"transfer {tid} rewards job {job}, which has no valid receipt in the log",
                    )
                )
                continue
            cost = cost_micro(
                r.input_tokens, r.output_tokens, p.input_per_1k_micro, p.output_per_1k_micro
            )
            fee = fee_micro(cost, p.fee_bps)
            want = {r.account: -cost, r.provider: cost - fee, p.network_account: fee}
            got: dict[str, int] = defaultdict(int)
            for le in legs:
                got[le.account] += le.amount_micro
            if {k: v for k, v in got.items() if v} != {k: v for k, v in want.items() if v}:
                rep.problems.append(
                    Problem(
                        "reward_mismatch",
                        f"job {job}: ledger {dict(got)} but the receipt earns {want}",
                        {"transfer": tid},
                    )
                )
        for acct, bal in rep.balances.items():
            if acct != EXTERNAL and bal < 0:
                rep.problems.append(Problem("negative_balance", f"{acct} is at {bal}"))


def format_report(rep: Report) -> str:
    lines = [
        f"tree size {rep.tree_size}, root {rep.root}",
        f"receipts verified {rep.receipts_verified} (+{rep.unanchored} past the checkpoint), "
        f"ledger entries {rep.ledger_entries}",
        "balances: " + ", ".join(f"{k}={v}" for k, v in sorted(rep.balances.items())),
    ]
    lines += [
        f"PROBLEM {p.kind}: {p.detail}"
        + (f" evidence={json.dumps(p.evidence)}" if p.evidence else "")
        for p in rep.problems
    ]
    lines.append("AUDIT OK" if rep.ok else f"AUDIT FAILED ({len(rep.problems)} problems)")
    return "\n".join(lines)
