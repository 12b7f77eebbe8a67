"""The worker's torch inference engine.

`load_engine` checks the weights' digest, loads them once (they stay resident), and starts one
scheduler thread per model so inference never blocks the worker's event loop. `Engine.generate`
is an async generator of TextDelta items ending with Finished; closing it cancels the request and
frees its place at once. Every limit is in EngineLimits; exceeding one is TooLarge or Overloaded.
No prompt or answer text is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import torch

from enclave.engine.loader import load_model
from enclave.engine.model import Transformer
from enclave.engine.sampling import select
from enclave.engine.tokenizer import Tokenizer
from enclave.errors import EnclaveError, EngineError, Overloaded, TooLarge

__all__ = [
    "Engine",
    "EngineLimits",
    "Finished",
    "GenerationRequest",
    "TextDelta",
    "load_engine",
]

log = structlog.get_logger("enclave.engine")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class EngineLimits:
    batch_size_max: int = 8
    context_tokens_max: int = 2048
    queued_jobs_max: int = 64
    prompt_tokens_max: int = 1536
    new_tokens_max: int = 512
    stop_sequences_max: int = 8
    stop_sequence_chars_max: int = 64


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str | None
    messages: tuple[tuple[str, str], ...] | None
    max_new_tokens: int
    max_input_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    text: str
    tokens: int


@dataclass(frozen=True)
class Finished:
    input_tokens: int
    output_tokens: int
    finish_reason: str  # "stop" | "length"


@dataclass
class _Job:
    req: GenerationRequest
    ids: list[int]
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[TextDelta | Finished | BaseException]
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, item: TextDelta | Finished | BaseException) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: the consumer is gone
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)


class Engine:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        name: str,
        model_sha256: bytes,
        device: str,
        limits: EngineLimits,
    ) -> None:
        self.name, self.model_sha256, self.device = name, model_sha256, device
        self.limits = limits
        self._model, self._tok = model, tokenizer
        self._eos = set(model.args.eos_token_ids)
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        dtype = next(model.parameters()).dtype
        model.setup_cache(1, limits.context_tokens_max, torch.device(device), dtype)
        self._thread = threading.Thread(target=self._run, name=f"engine-{name}", daemon=True)
        self._thread.start()

    # -- request side (event loop) --------------------------------------------------------------
    def _prepare(self, req: GenerationRequest) -> list[int]:
        lim = self.limits
        if (req.prompt is None) == (req.messages is None):
            raise EnclaveError("exactly one of prompt or messages is required")
        if not 0 < req.max_new_tokens <= lim.new_tokens_max:
            raise TooLarge(f"max_new_tokens must be within 1..{lim.new_tokens_max}")
        if len(req.stop) > lim.stop_sequences_max or any(
            not s or len(s) > lim.stop_sequence_chars_max for s in req.stop
        ):
            raise TooLarge(
                f"at most {lim.stop_sequences_max} stop sequences of 1..{lim.stop_sequence_chars_max} chars"
            )
        text = req.prompt if req.prompt is not None else self._tok.render_chat(req.messages or ())
        ids = self._tok.encode(text, add_special=req.prompt is not None)
        if not ids:
            raise EnclaveError("the prompt encodes to no tokens")
        cap = min(req.max_input_tokens, lim.prompt_tokens_max)
        if len(ids) > cap:
            raise TooLarge(f"prompt is {len(ids)} tokens; the limit is {cap}")
        if len(ids) + req.max_new_tokens > lim.context_tokens_max:
            raise TooLarge(
                f"prompt + max_new_tokens exceeds the context of {lim.context_tokens_max}"
            )
        return ids

    async def generate(self, req: GenerationRequest) -> AsyncIterator[TextDelta | Finished]:
        ids = self._prepare(req)
        with self._lock:
            if self._pending >= self.limits.queued_jobs_max:
                raise Overloaded(f"engine queue is full ({self.limits.queued_jobs_max} jobs)")
            self._pending += 1
        job = _Job(req, ids, asyncio.get_running_loop(), asyncio.Queue())
        self._jobs.put(job)
        try:
            while True:
                item = await job.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            job.cancelled.set()

    async def aclose(self) -> None:
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join, 10)

    # -- scheduler thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if not job.cancelled.is_set():
                    self._generate(job)
            except EnclaveError as exc:
                job.emit(exc)
            except Exception as exc:
                log.exception("engine_failure", model=self.name)
                job.emit(EngineError(f"inference failed: {exc.__class__.__name__}"))
            finally:
                with self._lock:
                    self._pending -= 1

    @torch.inference_mode()
    def _generate(self, job: _Job) -> None:
        req, model = job.req, self._model
        gen = torch.Generator(device=self.device)
        gen.manual_seed(
            req.seed if req.seed is not None else int.from_bytes(os.urandom(8), "little")
        )
        prompt = torch.tensor([job.ids], device=self.device)
        logits = model(prompt, 0)[0, -1]
        pos = len(job.ids)
        out: list[int] = []
        emitted_chars, emitted_tokens = 0, 0
        holdback = max((len(s) for s in req.stop), default=1) - 1
        reason = "length"
        text = ""
        while len(out) < req.max_new_tokens:
            if job.cancelled.is_set():
                return
            token = int(select(logits, req.temperature, req.top_k, req.top_p, gen))
            if token in self._eos:
                reason = "stop"
                break
            out.append(token)
            text = self._tok.decode(out)
            cut = min((i for i in (text.find(s) for s in req.stop) if i >= 0), default=-1)
            if cut >= 0:
                text, reason = text[:cut], "stop"
                break
            ready = len(text) - holdback
            while ready > emitted_chars and text[ready - 1] == "\ufffd":
                ready -= 1  # an incomplete UTF-8 sequence: wait for the next token
            if ready > emitted_chars:
                job.emit(TextDelta(text[emitted_chars:ready], len(out) - emitted_tokens))
                emitted_chars, emitted_tokens = ready, len(out)
            if len(out) < req.max_new_tokens:
                logits = model(torch.tensor([[token]], device=self.device), pos)[0, -1]
                pos += 1
        if len(text) > emitted_chars or len(out) > emitted_tokens:
            job.emit(TextDelta(text[emitted_chars:], len(out) - emitted_tokens))
        job.emit(Finished(input_tokens=len(job.ids), output_tokens=len(out), finish_reason=reason))


def load_engine(
    model_dir: Path,
    name: str,
    *,
    expected_sha256: bytes | None = None,
    device: str = "cpu",
    limits: EngineLimits = EngineLimits(),
    dtype: str = "float32",
) -> Engine:
    if dtype not in _DTYPES:
        raise EnclaveError(f"dtype must be one of {sorted(_DTYPES)}")
    model, digest, _ = load_model(model_dir, expected_sha256, device, _DTYPES[dtype])
    tok = Tokenizer(model_dir)
    log.info(
        "model_loaded", model=name, sha256=digest.hex(), device=device, family=model.args.family
    )
    return Engine(model, tok, name, digest, device, limits)
