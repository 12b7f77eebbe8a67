"""Running one sealed job inside the enclave (DESIGN.md steps 6-7).

Before any decryption: the header parses, names this worker, this key and a served model, its
token limits fit, the ciphertext has the exact size its bucket implies, the request is inside the
time window and its job id has not been seen. Then: open (off the event loop when large), bound
the prompt's size before any tokenizing (a prompt longer than `prompt_chars_per_token_max`
characters per allowed token is refused at once), generate, seal every piece as an authenticated
chunk, mark the last, and sign a receipt over what was received and sent.

Refusals before the request opens say only what the gateway can see anyway (the header). Once it
has opened, a refusal's reason may describe the prompt (its token count): it goes to the client
sealed under its response key (verify.chunks.seal_refusal); the gateway sees only the code.
Nothing here logs or keeps a prompt or an answer.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import structlog

from ccgw.enclave.config import WorkerLimits
from ccgw.enclave.embedding import Vectors, embed_events
from ccgw.enclave.engine import Engine, Finished, GenerationRequest, TextDelta
from ccgw.enclave.errors import Replayed, RequestRejected, TooLarge
from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.verify.chunks import ANSWER_SALT_BYTES, ChunkSealer, seal_refusal
from ccgw.verify.consistency import OutputCommitter, commit_salt, job_input_of, receipt_claims
from ccgw.verify.errors import LimitError, VerifyError
from ccgw.verify.hpke import OpenedRequest, check_sealed_size, parse_header, request_sha256
from ccgw.verify.receipts import RECEIPT_VERSION, Receipt

log = structlog.get_logger("enclave.jobs")
# What a refusal says in clear, per code (the reason itself travels sealed to the client).
SEALED_REFUSAL_TEXT = "refused; the reason is sealed to the client"


class ReplayGuard:
    """Remembers job ids for the request window; bounded (oldest evicted first, and a request
    older than the window is refused anyway, so eviction never re-opens a replay)."""

    def __init__(self, window_s: int, entries_max: int, clock: Callable[[], float]) -> None:
        self._window_ms = window_s * 1000
        self._max = entries_max
        self._clock = clock
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def check_and_add(self, job_id: bytes, issued_at_ms: int) -> None:
        now_ms = int(self._clock() * 1000)
        if abs(now_ms - issued_at_ms) > self._window_ms:
            raise Replayed("request is outside the worker's time window")
        while self._seen and next(iter(self._seen.values())) < now_ms - 2 * self._window_ms:
            self._seen.popitem(last=False)
        if job_id in self._seen:
            raise Replayed("job id already seen by this worker")
        if len(self._seen) >= self._max:
            raise Replayed("replay cache is full; retry later")
        self._seen[job_id] = now_ms


@dataclass
class JobContext:
    worker_id: str
    evidence_sha256: str
    provider: str = ""  # the provider account this worker's rewards go to (its token's subject)


class JobRunner:
    def __init__(
        self,
        keys: Keyring,
        engines: Mapping[str, Engine],
        limits: WorkerLimits,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._engines = engines
        self._limits = limits
        self._clock = clock
        self.replay = ReplayGuard(limits.request_window_s, limits.replay_cache_entries_max, clock)

    def check(self, sealed: cpb.SealedRequest, ctx: JobContext) -> cpb.RoutingHeader:
        """All checks that need no decryption. Raises RequestRejected subclasses."""
        try:
            header = parse_header(sealed.header)
            check_sealed_size(sealed, header)
        except LimitError as exc:
            raise TooLarge(str(exc)) from exc
        except VerifyError as exc:
            raise RequestRejected(str(exc)) from exc
        if header.worker_id != ctx.worker_id or header.key_id != self._keys.key_id:
            raise RequestRejected("request is not addressed to this worker's key")
        if header.model not in self._engines:
            raise RequestRejected(f"model {header.model!r} is not served here")
        if not header.max_input_tokens > 0 or not header.max_new_tokens > 0:
            raise RequestRejected("token limits must be positive")
        if header.max_new_tokens > self._limits.new_tokens_max:
            raise TooLarge(f"max_new_tokens exceeds {self._limits.new_tokens_max}")
        self.replay.check_and_add(bytes(header.job_id), header.issued_at_ms)
        return header

    async def _open(self, sealed: cpb.SealedRequest, header: cpb.RoutingHeader) -> OpenedRequest:
        try:
            if len(sealed.ciphertext) > self._limits.open_inline_bytes_max:
                return await asyncio.to_thread(self._keys.open_request, sealed, header)
            return self._keys.open_request(sealed, header)
        except VerifyError as exc:
            raise RequestRejected(f"request does not open: {exc.__class__.__name__}") from exc

    def _request(self, inner: cpb.InnerRequest, header: cpb.RoutingHeader) -> GenerationRequest:
        """The engine's request, once its prompt is known to be small enough to tokenize."""
        max_input = min(header.max_input_tokens, self._limits.prompt_tokens_max)
        kind = inner.WhichOneof("input")
        messages = tuple((m.role, m.content) for m in inner.chat.messages)
        if kind == "prompt":
            chars = len(inner.prompt)
        elif kind == "embed":
            chars = max((len(t) for t in inner.embed.texts), default=0)  # each text on its own
        else:
            chars = sum(len(r) + len(c) for r, c in messages)
        chars_max = max_input * self._limits.prompt_chars_per_token_max
        if chars > chars_max:
            raise TooLarge(
                f"prompt has {chars} characters; at most {chars_max} for {max_input} tokens"
            )
        s = inner.sampling
        return GenerationRequest(
            prompt=inner.prompt if kind == "prompt" else None,
            messages=messages if kind == "chat" else None,
            max_new_tokens=header.max_new_tokens,
            max_input_tokens=max_input,
            temperature=s.temperature,
            top_p=s.top_p if s.top_p > 0 else 1.0,
            top_k=s.top_k,
            seed=s.seed if s.HasField("seed") else None,
            stop=tuple(s.stop),
        )

    async def run(
        self, sealed: cpb.SealedRequest, ctx: JobContext
    ) -> AsyncIterator[wpb.WorkerMessage]:
        header = self.check(sealed, ctx)
        inner = (await self._open(sealed, header)).inner
        job_id = bytes(header.job_id)
        try:
            req = self._request(inner, header)
            async for msg in self._generate(sealed, header, inner, req, ctx):
                yield msg
        except RequestRejected as exc:
            log.info("job_refused", job_id=job_id.hex(), code=exc.code)
            yield sealed_refusal(job_id, bytes(inner.response_key), exc)

    async def _generate(
        self,
        sealed: cpb.SealedRequest,
        header: cpb.RoutingHeader,
        inner: cpb.InnerRequest,
        req: GenerationRequest,
        ctx: JobContext,
    ) -> AsyncIterator[wpb.WorkerMessage]:
        job_id = bytes(header.job_id)
        engine = self._engines[header.model]
        salt = os.urandom(ANSWER_SALT_BYTES)
        sealer = ChunkSealer(bytes(inner.response_key), salt, job_id)
        started_ms = int(self._clock() * 1000)

        def update(piece: cpb.AnswerPiece, final: bool) -> wpb.WorkerMessage:
            """One chunk per message; the first also carries the start (the answer salt)."""
            index, ct = sealer.seal(piece.SerializeToString(), final)
            u = wpb.JobUpdate(job_id=job_id)
            u.chunks.add(index=index, ciphertext=ct, final=final)
            if index == 0:
                u.answer_salt = salt
            return wpb.WorkerMessage(update=u)

        pending_text, pending_tokens = [], 0
        finished: Finished | None = None
        # Receipt v3 commits to the answer text (ADR 14): hashed as it streams, never kept.
        committer = OutputCommitter(commit_salt(bytes(inner.response_key)))
        gen = (
            embed_events(engine, inner.embed.texts, req.max_input_tokens)
            if inner.WhichOneof("input") == "embed"
            else engine.generate(req)
        )
        try:
            async for ev in gen:
                if isinstance(ev, TextDelta):
                    committer.update(ev.text)
                    pending_text.append(ev.text)
                    pending_tokens += ev.tokens
                    if pending_tokens >= self._limits.chunk_tokens_max:
                        yield update(
                            cpb.AnswerPiece(text="".join(pending_text), tokens=pending_tokens),
                            False,
                        )
                        pending_text, pending_tokens = [], 0
                elif isinstance(ev, Vectors):
                    yield update(cpb.AnswerPiece(embeddings=ev.pieces()), False)
                else:
                    finished = ev
        finally:
            aclose = getattr(gen, "aclose", None)
            if aclose is not None:
                await aclose()
        if finished is None:
            raise RequestRejected("engine ended without finishing")
        usage = cpb.Usage(input_tokens=finished.input_tokens, output_tokens=finished.output_tokens)
        last = update(
            cpb.AnswerPiece(
                text="".join(pending_text),
                tokens=pending_tokens,
                usage=usage,
                finish_reason=finished.finish_reason,
            ),
            True,
        )
        # The final chunk and the receipt over the whole answer travel in one message.
        spot = receipt_claims(inner, header.max_new_tokens, None)
        if job_input_of(inner, header.max_new_tokens) is not None:
            spot["output_commit"] = committer.hexdigest()
        spot["engine_version"] = str(getattr(engine, "engine_version", ""))
        spot["dtype"] = str(getattr(engine, "dtype", ""))
        last.update.receipt_jws = self._sign(
            sealed, header, ctx, engine.model_sha256, sealer, finished, started_ms, spot
        )
        yield last
        log.info(
            "job_done",
            job_id=job_id.hex(),
            request_bytes=len(sealed.ciphertext),
            chunks=sealer.digest.count,
            input_tokens=finished.input_tokens,
            output_tokens=finished.output_tokens,
        )

    def _sign(
        self,
        sealed: cpb.SealedRequest,
        header: cpb.RoutingHeader,
        ctx: JobContext,
        model_sha256: bytes,
        sealer: ChunkSealer,
        finished: Finished,
        started_ms: int,
        spot: Mapping[str, str | int],
    ) -> str:
        return self._keys.sign(
            Receipt(
                v=RECEIPT_VERSION,
                job_id=bytes(header.job_id).hex(),
                worker_id=ctx.worker_id,
                key_id=self._keys.key_id,
                account=header.account,
                provider=ctx.provider,
                model=header.model,
                model_digest=model_sha256.hex(),
                request_sha256=request_sha256(sealed),
                answer_sha256=sealer.digest.hexdigest(),
                answer_chunks=sealer.digest.count,
                input_tokens=finished.input_tokens,
                output_tokens=finished.output_tokens,
                started_at_ms=started_ms,
                finished_at_ms=int(self._clock() * 1000),
                evidence_sha256=ctx.evidence_sha256,
                finish_reason=finished.finish_reason,
                **spot,  # type: ignore[arg-type]
            )
        )


def sealed_refusal(job_id: bytes, response_key: bytes, exc: RequestRejected) -> wpb.WorkerMessage:
    """A JobFailed whose reason only the client can read; the gateway sees the code."""
    salt = os.urandom(ANSWER_SALT_BYTES)
    return wpb.WorkerMessage(
        failed=wpb.JobFailed(
            job_id=job_id,
            code=wpb.FailureCode.Value(exc.code),  # type: ignore[arg-type]
            message=SEALED_REFUSAL_TEXT,
            detail_salt=salt,
            sealed_detail=seal_refusal(response_key, salt, job_id, exc.code, str(exc)),
        )
    )
