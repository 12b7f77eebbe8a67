"""The client SDK: trust nothing the gateway says.

1. list workers and verify each one's evidence itself, against the client's own policy and roots
   (cached per evidence digest), optionally demanding fresh evidence for its own nonce;
2. seal the request to the chosen worker's attested key, the routing header bound through HPKE;
3. open each answer chunk under the client's own response key, refusing gaps, reorders,
   duplicates and truncation;
4. verify the receipt with the worker's attested receipt key and against what it sent and got.
Text is yielded only after its chunk authenticated; `complete()` returns only fully verified answers.

Verified workers are cached per model for `workers_cache_s` (and never past their evidence's
allowed age): `complete()` lists again only when the cache is stale or a worker turned out gone.
Every entry point raises only client.errors exceptions, whatever bytes the gateway sends.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import jwt
from google.protobuf.message import DecodeError

from ccgw.client.audit import LogIdentity
from ccgw.client.errors import (
    AnswerRejected,
    GatewayMisbehaved,
    GatewayRefused,
    InvalidInput,
    NoTrustedWorker,
    UnknownModel,
    WorkerRefused,
)
from ccgw.client.releases import ReleaseFollower, ReleaseTrust
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import gateway_pb2 as gpb
from ccgw.protos.ccgw.v1 import gateway_pb2_grpc as ggrpc
from ccgw.protos.ccgw.v1 import log_pb2 as lpb
from ccgw.protos.ccgw.v1 import log_pb2_grpc as lgrpc
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.verify import checkpoint, limits, log_entries, merkle
from ccgw.verify.attestation.bundle import VerifiedWorker, verify_bundle
from ccgw.verify.attestation.policy import Policy
from ccgw.verify.attestation.report import AttestationReport
from ccgw.verify.attestation.roots import RootStore
from ccgw.verify.attestation.supplied import Collateral
from ccgw.verify.binding import evidence_sha256
from ccgw.verify.checkpoint import Checkpoint
from ccgw.verify.chunks import ChunkOpener, open_refusal
from ccgw.verify.consistency import (
    JobInput,
    Tolerance,
    Verdict,
    commit_salt,
    job_input_of,
    receipt_claims,
)
from ccgw.verify.disputes import Evidence
from ccgw.verify.errors import LogError, VerifyError
from ccgw.verify.hpke import request_sha256, seal_request
from ccgw.verify.log_entries import Entry
from ccgw.verify.receipts import RECEIPT_VERSION, Receipt, verify_job_receipt

MESSAGE_BYTES_MAX = limits.SEALED_REQUEST_BYTES_MAX + 64 * limits.KIB
M = TypeVar("M")
# Statuses after which complete() tries the next worker (the worker is gone or going).
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND})


@dataclass(frozen=True)
class ClientLimits:
    rpc_deadline_s: float = 30.0
    job_deadline_s: float = 600.0
    retry_attempts_max: int = 3  # other workers tried when one is unavailable before answering
    max_input_tokens: int = 1_536
    workers_verified_max: int = 64  # evidence bundles verified per listing (each costs ~2 ms)
    workers_cache_s: float = 10.0  # complete() reuses a verified listing this long
    releases_refresh_s: float = 10.0  # the release view is re-read from the log this often


class UnreleasedSoftwareWarning(UserWarning):
    """Issued on every verification under accept_unreleased (shown each time, not once)."""


warnings.simplefilter("always", UnreleasedSoftwareWarning)


@dataclass(frozen=True)
class TrustedWorker:
    worker_id: str
    verified: VerifiedWorker
    in_flight: int
    capacity: int


@dataclass
class Answer:
    text: str = ""
    receipt: Receipt | None = None
    receipt_jws: str = ""
    log_index: int = -1
    usage: cpb.Usage = field(default_factory=cpb.Usage)
    finish_reason: str = ""
    worker_id: str = ""
    # What was verified about the worker that answered, with the receipt verdict.
    report: AttestationReport | None = None
    embeddings: list[list[float]] = field(default_factory=list)  # embedding jobs, input order
    worker: TrustedWorker | None = None  # the verified worker that answered
    # What a spot check or a dispute needs (ADR 14): the committed input and the salt that opens
    # the receipt's commitments. Held in memory only; `ccgw canary` / `ccgw dispute` write them.
    job_input: JobInput | None = None
    commit_salt: bytes = b""


@dataclass(frozen=True)
class TextEvent:
    text: str


def _with_receipt(worker: TrustedWorker, answer: Answer) -> AttestationReport | None:
    report, r = worker.verified.report, answer.receipt
    if report is None or r is None:
        return report
    return report.with_receipt(
        f"VERIFIED (job {r.job_id}, {r.input_tokens}+{r.output_tokens} tokens, "
        f"evidence {r.evidence_sha256[:16]}…, log index {answer.log_index})"
    )


class Client:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        token: str,
        policy: Policy,
        roots: RootStore,
        limits: ClientLimits = ClientLimits(),
        clock: Callable[[], float] = time.time,
        releases: ReleaseTrust | None = None,
    ) -> None:
        """`releases`: follow the releases signed by these keys in this log (ADR 10): a worker is
        trusted only when a release in a checkpoint this client verified allows its software.
        Without it the policy must pin the software itself (policy.pins_software) or accept
        unreleased software by name (policy.accept_unreleased, warned on every use)."""
        if releases is None and not policy.pins_software and not policy.accept_unreleased:
            raise InvalidInput(
                "no release key: give `releases` (release keys and the log key), a policy that "
                "pins measurements, or a policy with accept_unreleased=True"
            )
        self._releases = (
            ReleaseFollower(releases, limits.releases_refresh_s) if releases is not None else None
        )
        self._stub = ggrpc.GatewayStub(channel)
        self._log = lgrpc.TransparencyLogStub(channel)
        self._token = token
        # The client's own token: its subject is the account it pays from (not a trust decision).
        try:
            sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
        except jwt.InvalidTokenError as exc:
            raise InvalidInput("the client token is not a JWT") from exc
        if not isinstance(sub, str) or not sub:
            raise InvalidInput("the client token names no account (sub)")
        self.account = sub
        self._md = [("authorization", f"Bearer {token}")]
        self._policy, self._roots = policy, roots
        self._limits = limits
        self._clock = clock
        self._verified: dict[str, VerifiedWorker] = {}
        self._listed: dict[str, tuple[float, list[TrustedWorker]]] = {}  # model -> (until, workers)
        self._busy: dict[str, int] = {}  # worker id -> this client's jobs on it now
        self.rejected: dict[str, str] = {}  # worker id -> why its evidence was refused
        # worker id -> the attestation report of every worker last listed, refused ones too
        self.reports: dict[str, AttestationReport] = {}
        self._collateral: Collateral | None = None  # the gateway's cache, verified where used

    @classmethod
    def connect(
        cls,
        address: str,
        token: str,
        policy: Policy,
        roots: RootStore,
        *,
        tls_ca_pem: bytes | None = None,
        limits: ClientLimits = ClientLimits(),
        releases: ReleaseTrust | None = None,
    ) -> Client:
        """A client on its own channel; TLS when `tls_ca_pem` is given (plaintext is for loopback)."""
        options = [
            ("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
            ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
        ]
        if tls_ca_pem is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=tls_ca_pem)
            channel = grpc.aio.secure_channel(address, creds, options=options)
        else:
            channel = grpc.aio.insecure_channel(address, options=options)
        return cls(channel, token, policy, roots, limits, releases=releases)

    @property
    def policy(self) -> Policy:
        """The attestation policy this client verifies workers against."""
        return self._policy

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    async def _call(self, method: Any, request: object, expect: type[M]) -> M:
        """One unary call: the response, GatewayRefused, or GatewayMisbehaved (unparsable)."""
        try:
            resp = await method(request, metadata=self._md, timeout=self._limits.rpc_deadline_s)
        except grpc.aio.AioRpcError as exc:
            raise GatewayRefused(exc.code(), exc.details() or "") from exc
        except grpc.RpcError as exc:
            raise GatewayRefused(grpc.StatusCode.UNKNOWN, str(exc)) from exc
        if not isinstance(resp, expect):
            raise GatewayMisbehaved(f"the gateway's {expect.__name__} does not parse")
        return resp

    @property
    def release_checkpoint(self) -> Checkpoint | None:
        """The last log checkpoint the client verified its releases under (None before)."""
        return self._releases.checkpoint if self._releases is not None else None

    async def _follow(self) -> None:
        """Bring the policy's release view up to date (a checkpoint this client verified)."""
        if self._releases is None:
            return
        view = await self._releases.current(self._log, self._call)
        if view is not self._policy.release_view:
            self._policy = self._policy.with_releases(view)
            self._verified.clear()  # a revocation may refuse what was verified before

    async def workers(self, model: str, region: str = "") -> list[TrustedWorker]:
        """Workers serving `model` (every model when empty) whose evidence passes THIS client's
        policy (the gateway's ranking, least loaded first)."""
        return (await self._list(model, region))[0]

    async def _list(
        self, model: str, region: str = ""
    ) -> tuple[list[TrustedWorker], dict[str, str]]:
        """(trusted workers, {worker id: why refused}) of one listing."""
        await self._follow()
        resp = await self._call(
            self._stub.ListWorkers,
            gpb.ListWorkersRequest(model=model, region=region),
            gpb.ListWorkersResponse,
        )
        self._take_collateral(resp)
        out, refused = [], {}
        for w in resp.workers[: self._limits.workers_verified_max]:
            if w.state == gpb.DRAINING:
                continue
            try:
                v = self._verify(w.evidence)
            except VerifyError as exc:
                refused[w.worker_id] = str(exc)
                if isinstance(exc.report, AttestationReport):
                    self.reports[w.worker_id] = exc.report
                continue
            if v.report is not None:
                self.reports[w.worker_id] = v.report
            if (model and model not in v.models) or w.worker_id != "w-" + v.key_id[:16]:
                refused[w.worker_id] = "worker id or models do not match its evidence"
                continue
            out.append(TrustedWorker(w.worker_id, v, w.in_flight, w.capacity))
        self.rejected.update(refused)
        return sorted(out, key=lambda t: t.in_flight / max(1, t.capacity)), refused

    def _take_collateral(self, resp: gpb.ListWorkersResponse | gpb.ChallengeWorkerResponse) -> None:
        """The gateway's collateral (CRLs, TCB info): untrusted, each item verified where used;
        an oversized set is ignored (its checks are then skips)."""
        if not resp.HasField("collateral"):
            return
        try:
            self._collateral = Collateral.from_proto(resp.collateral)
        except VerifyError:
            self._collateral = None

    def _fresh(self, v: VerifiedWorker) -> bool:
        return (self._clock() * 1000 - v.issued_at_ms) / 1000 <= self._policy.max_evidence_age_s

    def _verify(self, bundle: cpb.EvidenceBundle, nonce: bytes | None = None) -> VerifiedWorker:
        digest = evidence_sha256(bundle)
        cached = self._verified.get(digest)
        if cached is not None and nonce is None and self._fresh(cached):
            return cached
        if self._policy.accept_unreleased:
            warnings.warn(
                "accepting a worker without checking its software against any release "
                "(--accept-unreleased-software)",
                UnreleasedSoftwareWarning,
                stacklevel=2,
            )
        v = verify_bundle(
            bundle,
            self._policy,
            self._roots,
            self._now(),
            expected_nonce=nonce,
            collateral=self._collateral,
        )
        if len(self._verified) >= 4 * self._limits.workers_verified_max:
            self._verified.clear()  # bounded: re-verifying costs ~2 ms a bundle
        self._verified[digest] = v
        return v

    async def challenge(self, worker_id: str) -> VerifiedWorker:
        """Fresh evidence for the client's own nonce."""
        await self._follow()
        nonce = os.urandom(limits.NONCE_BYTES)
        resp = await self._call(
            self._stub.ChallengeWorker,
            gpb.ChallengeWorkerRequest(worker_id=worker_id, nonce=nonce),
            gpb.ChallengeWorkerResponse,
        )
        self._take_collateral(resp)
        try:
            return self._verify(resp.evidence, nonce)
        except VerifyError as exc:
            raise AnswerRejected(f"worker {worker_id} evidence refused: {exc}") from exc

    async def _signed(self, log_id: LogIdentity) -> Checkpoint:
        resp = await self._call(
            self._log.GetCheckpoint, lpb.GetCheckpointRequest(), lpb.GetCheckpointResponse
        )
        try:
            return checkpoint.verify(resp.checkpoint, log_id.name, log_id.public_raw, log_id.origin)
        except VerifyError as exc:
            raise AnswerRejected(f"the log's checkpoint is refused: {exc}") from exc

    @staticmethod
    def _included(resp: lpb.GetInclusionProofResponse, cp: Checkpoint) -> object:
        """The typed body of the entry the proof is for, once the proof leads to cp's root."""
        entry = Entry(resp.entry.kind, bytes(resp.entry.body))
        try:
            if resp.tree_size != cp.size or resp.entry.index != resp.leaf_index:
                raise LogError("the log serves a proof for another tree size or entry")
            merkle.verify_inclusion(
                entry.leaf_hash(), resp.leaf_index, cp.size, list(resp.hashes), cp.root
            )
            return log_entries.parse(entry)
        except VerifyError as exc:
            raise AnswerRejected(f"inclusion proof refused: {exc}") from exc

    async def _proven(
        self, log_id: LogIdentity, method: Any, request: Callable[[int], object]
    ) -> tuple[object, Checkpoint]:
        """(typed entry body, checkpoint): the entry's proof under a checkpoint signed by the log
        key the client knows. Asking for the latest size first makes the gateway sign a tree that
        covers the entry."""
        resp = await self._call(method, request(0), lpb.GetInclusionProofResponse)
        cp = await self._signed(log_id)
        if resp.tree_size != cp.size:
            resp = await self._call(method, request(cp.size), lpb.GetInclusionProofResponse)
        return self._included(resp, cp), cp

    async def inclusion(self, answer: Answer, log_id: LogIdentity) -> Checkpoint:
        """Check that the answer's receipt is in the gateway's log under a checkpoint signed by the
        log key the client knows. Returns the checkpoint; raises AnswerRejected otherwise."""
        if answer.receipt is None:
            raise InvalidInput("the answer has no verified receipt to look up")
        job = bytes.fromhex(answer.receipt.job_id)
        body, cp = await self._proven(
            log_id,
            self._log.GetInclusionProof,
            lambda size: lpb.GetInclusionProofRequest(job_id=job, tree_size=size),
        )
        if not isinstance(body, log_entries.ReceiptBody) or body.receipt_jws != answer.receipt_jws:
            raise AnswerRejected("the log serves another entry for this job")
        return cp

    async def account_key(self, log_id: LogIdentity, known_keys: Sequence[bytes]) -> bytes:
        """Check that every withdrawal key the log binds to this client's account is one of its
        own (`known_keys`, raw Ed25519 public keys), under a signed checkpoint; returns the key in
        force. Raises AnswerRejected when the log binds a key the holder does not know."""
        resp = await self._call(
            self._log.GetAccountKeys,
            lpb.GetAccountKeysRequest(account=self.account),
            lpb.GetAccountKeysResponse,
        )
        indexes = list(resp.log_indexes)
        if not indexes or len(indexes) > limits.ACCOUNT_KEY_CHANGES_MAX:
            raise AnswerRejected(f"the log binds {len(indexes)} keys to {self.account}")
        key = b""
        for i in indexes:

            def request(size: int, index: int = i) -> object:
                return lpb.GetEntryProofRequest(index=index, tree_size=size)

            body, _ = await self._proven(log_id, self._log.GetEntryProof, request)
            if not isinstance(body, log_entries.AccountKeyBody) or body.account != self.account:
                raise AnswerRejected(f"entry {i} is not a key of {self.account}")
            if body.public_key not in known_keys or body.previous_key != key:
                raise AnswerRejected(
                    f"entry {i} binds {self.account} to a key its holder does not know"
                )
            key = body.public_key
        return key

    async def dispute(self, evidence: bytes) -> gpb.FileDisputeResponse:
        """File a dispute (ADR 14; verify.disputes.Evidence as JSON, e.g. from `evidence_for`)."""
        return await self._call(
            self._stub.FileDispute,
            gpb.FileDisputeRequest(evidence=evidence),
            gpb.FileDisputeResponse,
        )

    async def balance(self) -> tuple[int, int]:
        resp = await self._call(
            self._stub.GetBalance, gpb.GetBalanceRequest(), gpb.GetBalanceResponse
        )
        return resp.balance_micro, resp.held_micro

    def seal(
        self,
        worker: TrustedWorker,
        model: str,
        *,
        prompt: str | None = None,
        messages: Sequence[tuple[str, str]] | None = None,
        max_new_tokens: int = 64,
        sampling: cpb.SamplingParams | None = None,
        suite: int = cpb.X25519_SHA256_CHACHA20POLY1305,
        job_id: bytes | None = None,
        texts: Sequence[str] | None = None,
    ) -> tuple[cpb.SealedRequest, cpb.InnerRequest]:
        if [prompt, messages, texts].count(None) != 2:
            raise InvalidInput("give exactly one of prompt, messages or texts")
        inner = cpb.InnerRequest(
            response_key=os.urandom(32), request_nonce=os.urandom(32), sampling=sampling
        )
        if prompt is not None:
            inner.prompt = prompt
        elif texts is not None:
            inner.embed.texts.extend(texts)
        else:
            inner.chat.messages.extend(
                cpb.ChatMessage(role=r, content=c) for r, c in messages or ()
            )
        header = cpb.RoutingHeader(
            job_id=job_id or os.urandom(limits.JOB_ID_BYTES),
            model=model,
            worker_id=worker.worker_id,
            key_id=worker.verified.key_id,
            suite=suite,  # type: ignore[arg-type]
            max_input_tokens=self._limits.max_input_tokens,
            max_new_tokens=max_new_tokens,
            issued_at_ms=int(self._clock() * 1000),
            account=self.account,
        )
        try:
            return seal_request(header, inner, worker.verified.keys), inner
        except VerifyError as exc:
            raise InvalidInput(f"cannot seal this request: {exc}") from exc

    async def stream(
        self,
        worker: TrustedWorker,
        sealed: cpb.SealedRequest,
        inner: cpb.InnerRequest,
        answer: Answer,
    ) -> AsyncIterator[TextEvent]:
        """Send one sealed request; yield authenticated text; fill `answer` once all verifies."""
        job = _Job(worker, sealed, inner, answer)
        call = self._stub.Infer(sealed, metadata=self._md, timeout=self._limits.job_deadline_s)
        self._busy[worker.worker_id] = self._busy.get(worker.worker_id, 0) + 1
        try:
            async for ev in call:
                text = job.on_event(ev)
                if text:
                    yield TextEvent(text)
        except grpc.aio.AioRpcError as exc:
            raise job.refused(exc.code(), exc.details() or "") from exc
        except grpc.RpcError as exc:
            raise GatewayRefused(grpc.StatusCode.UNKNOWN, str(exc)) from exc
        except VerifyError as exc:
            raise AnswerRejected(f"answer refused: {exc}") from exc
        except DecodeError as exc:
            raise AnswerRejected("an answer chunk does not parse") from exc
        finally:
            self._busy[worker.worker_id] -= 1
            if not call.done():
                call.cancel()
        job.ended()

    async def complete(
        self,
        model: str,
        *,
        prompt: str | None = None,
        messages: Sequence[tuple[str, str]] | None = None,
        max_new_tokens: int = 64,
        sampling: cpb.SamplingParams | None = None,
        suite: int = cpb.X25519_SHA256_CHACHA20POLY1305,
        texts: Sequence[str] | None = None,
    ) -> Answer:
        """Pick a trusted worker, seal, call, verify (see `generate`); a fully verified answer."""
        answer = Answer()
        async for _ in self.generate(
            model,
            answer,
            prompt=prompt,
            messages=messages,
            max_new_tokens=max_new_tokens,
            sampling=sampling,
            suite=suite,
            texts=texts,
        ):
            pass
        return answer

    async def embed(
        self,
        model: str,
        texts: Sequence[str],
        suite: int = cpb.X25519_SHA256_CHACHA20POLY1305,
    ) -> Answer:
        """Embeddings of `texts` from an attested worker; `answer.embeddings` in input order."""
        return await self.complete(model, texts=texts, max_new_tokens=1, suite=suite)

    async def generate(
        self,
        model: str,
        answer: Answer,
        *,
        prompt: str | None = None,
        messages: Sequence[tuple[str, str]] | None = None,
        max_new_tokens: int = 64,
        sampling: cpb.SamplingParams | None = None,
        suite: int = cpb.X25519_SHA256_CHACHA20POLY1305,
        texts: Sequence[str] | None = None,
    ) -> AsyncGenerator[TextEvent, None]:
        """Pick a trusted worker, seal, call, yield authenticated text, and fill `answer` once the
        receipt verifies; retry on other workers (same job id, so the gateway holds and charges
        once) while none has started answering. Nothing is sent before a worker verifies."""
        candidates, refused = await self._trusted(model)
        if not candidates:
            why = "; ".join(f"{k}: {v}" for k, v in refused.items())
            if not why:
                raise UnknownModel(f"no worker serves model {model!r}")
            raise NoTrustedWorker(f"no worker for {model!r} passes the client's policy ({why})")
        job_id = os.urandom(limits.JOB_ID_BYTES)
        tried: set[str] = set()
        last: GatewayRefused | None = None
        for _ in range(self._limits.retry_attempts_max):
            worker = self._pick(candidates, tried)
            if worker is None:  # every listed worker was tried: the listing may be stale
                candidates, _ = await self._trusted(model, refresh=True)
                worker = self._pick(candidates, tried)
            if worker is None:
                break
            tried.add(worker.worker_id)
            sealed, inner = self.seal(
                worker,
                model,
                prompt=prompt,
                messages=messages,
                max_new_tokens=max_new_tokens,
                sampling=sampling,
                suite=suite,
                job_id=job_id,
                texts=texts,
            )
            got_text = False
            answer.embeddings.clear()
            try:
                async for ev in self.stream(worker, sealed, inner, answer):
                    got_text = True
                    yield ev
                return
            except GatewayRefused as exc:
                if exc.code not in _RETRYABLE or got_text:
                    raise
                self._listed.pop(model, None)
                last = exc
        if last is None:
            raise NoTrustedWorker(f"no worker for {model!r} is left to try")
        raise last

    async def _trusted(
        self, model: str, refresh: bool = False
    ) -> tuple[list[TrustedWorker], dict[str, str]]:
        """Verified workers for `model` (from the cache while it is fresh), and the refusals of
        a fresh listing."""
        cached = self._listed.get(model)
        now = self._clock()
        if not refresh and cached is not None and now < cached[0]:
            alive = [w for w in cached[1] if self._fresh(w.verified)]
            if alive:
                return alive, {}
        found, refused = await self._list(model)
        if found:
            self._listed[model] = (now + self._limits.workers_cache_s, found)
        else:
            self._listed.pop(model, None)
        return found, refused

    def _pick(self, workers: list[TrustedWorker], tried: set[str]) -> TrustedWorker | None:
        """The least busy untried worker (by this client's own jobs, then the listed load)."""
        left = [w for w in workers if w.worker_id not in tried]
        if not left:
            return None
        return min(left, key=lambda w: self._busy.get(w.worker_id, 0) / max(1, w.capacity))


def evidence_for(
    answer: Answer, verdict: Verdict, tolerance: Tolerance, verifier: dict[str, str]
) -> Evidence:
    """A dispute's evidence for one of this client's answers and a verifier's verdict on it."""
    r = answer.receipt
    if r is None or answer.job_input is None or not answer.commit_salt:
        raise InvalidInput("only a verified text answer (with its receipt) can be disputed")
    return Evidence(
        receipt_jws=answer.receipt_jws,
        evidence_sha256=r.evidence_sha256,
        model_digest=r.model_digest,
        salt=answer.commit_salt,
        job=answer.job_input,
        answer=answer.text,
        verdict=verdict,
        tolerance=tolerance,
        verifier=verifier,
    )


def _take_embeddings(piece: cpb.AnswerPiece, into: list[list[float]]) -> None:
    """Append a chunk's vectors, which must continue the input order without gaps."""
    for e in piece.embeddings:
        if e.index != len(into) or not e.values:
            raise AnswerRejected("embeddings out of order or empty")
        into.append(list(e.values))


class _Job:
    """One call's state: the events of an Infer stream, checked in order."""

    def __init__(
        self,
        worker: TrustedWorker,
        sealed: cpb.SealedRequest,
        inner: cpb.InnerRequest,
        answer: Answer,
    ) -> None:
        self.worker, self.sealed, self.inner, self.answer = worker, sealed, inner, answer
        self.header = cpb.RoutingHeader.FromString(sealed.header)
        self.opener: ChunkOpener | None = None
        self.parts: list[str] = []
        self.reason: str | None = None  # a worker refusal's reason, opened here
        self.done = False

    def on_event(self, ev: object) -> str:
        """Text the event authenticates ("" for none); raises on anything out of order."""
        if not isinstance(ev, gpb.InferEvent):
            raise GatewayMisbehaved("an Infer event from the gateway does not parse")
        if self.done:
            raise GatewayMisbehaved("the gateway sent events after the receipt")
        kind = ev.WhichOneof("event")
        if kind == "update":
            u = ev.update
            if bytes(u.job_id) != self.header.job_id:
                raise AnswerRejected("an update for another job")
            if u.answer_salt:
                self._start(bytes(u.answer_salt))
            text = "".join([self._chunk(c) for c in u.chunks])
            if u.receipt_jws:
                self._receipt(u.receipt_jws, u.log_index)
            return text
        if kind == "started":
            if bytes(ev.started.job_id) != self.header.job_id:
                raise AnswerRejected("unexpected job start")
            self._start(bytes(ev.started.answer_salt))
        elif kind == "chunk":
            return self._chunk(ev.chunk)
        elif kind == "receipt":
            self._receipt(ev.receipt.jws, ev.receipt.log_index)
        elif kind == "failed":
            self._failed(ev.failed)
        else:
            raise GatewayMisbehaved(f"unexpected Infer event {kind!r}")
        return ""

    def _start(self, salt: bytes) -> None:
        if self.opener is not None:
            raise AnswerRejected("unexpected job start")
        self.opener = ChunkOpener(bytes(self.inner.response_key), salt, self.header.job_id)
        self.answer.worker = self.worker

    def _chunk(self, c: Any) -> str:
        if self.opener is None:
            raise AnswerRejected("answer chunk before the job started")
        piece = cpb.AnswerPiece.FromString(self.opener.open(c.index, c.ciphertext, c.final))
        self.parts.append(piece.text)
        _take_embeddings(piece, self.answer.embeddings)
        if c.final:
            self.answer.usage.CopyFrom(piece.usage)
            self.answer.finish_reason = piece.finish_reason
        return piece.text

    def _receipt(self, jws: str, log_index: int) -> None:
        if self.opener is None:
            raise AnswerRejected("receipt before any answer")
        self.opener.finish()
        a = self.answer
        if len(a.embeddings) != len(self.inner.embed.texts):
            raise AnswerRejected("the answer has another number of embeddings")
        a.receipt = verify_job_receipt(
            jws,
            self.worker.verified,
            self.worker.worker_id,
            self.header,
            request_sha256(self.sealed),
            self.opener.digest,
            input_tokens=a.usage.input_tokens,
            output_tokens=a.usage.output_tokens,
            v=RECEIPT_VERSION,
            **receipt_claims(self.inner, self.header.max_new_tokens, "".join(self.parts)),
        )
        a.job_input = job_input_of(self.inner, self.header.max_new_tokens)
        a.commit_salt = commit_salt(bytes(self.inner.response_key))
        a.receipt_jws, a.log_index = jws, log_index
        a.text = "".join(self.parts)
        a.worker_id = self.worker.worker_id
        a.report = _with_receipt(self.worker, a)
        self.done = True

    def _failed(self, f: Any) -> None:
        """The worker's sealed reason (the status that ends the stream follows)."""
        try:
            self.reason = open_refusal(
                bytes(self.inner.response_key),
                bytes(f.detail_salt),
                self.header.job_id,
                wpb.FailureCode.Name(f.code),
                bytes(f.sealed_detail),
            )
        except (VerifyError, ValueError):
            self.reason = None  # the status still says what failed; the reason is not trusted

    def refused(self, code: grpc.StatusCode, details: str) -> GatewayRefused:
        if self.reason is not None:
            return WorkerRefused(code, details, self.reason)
        return GatewayRefused(code, details)

    def ended(self) -> None:
        """The stream ended without an error status: complete only with a verified receipt."""
        if self.done:
            return
        if self.opener is not None:
            try:
                self.opener.finish()
            except VerifyError as exc:
                raise AnswerRejected(f"answer refused: {exc}") from exc
        raise AnswerRejected("the stream ended without a receipt")
