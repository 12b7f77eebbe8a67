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
        model.setup_cache(
            limits.batch_size_max, limits.context_tokens_max, torch.device(device), dtype
        )
        self.stats = EngineStats()
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
        """Continuous batching: admit queued jobs into free cache slots (one batched prefill for
        all jobs admitted together), then one decode pass for every active sequence per step. A
        finished or cancelled sequence frees its slot before the next step."""
        free = list(range(self.limits.batch_size_max))
        active: dict[int, _Seq] = {}
        stopping = False
        admitted: list[tuple[_Job, int]] = []
        while True:
            while free and not stopping:
                try:
                    job = self._jobs.get(block=not active and not admitted)
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                if job.cancelled.is_set():
                    self._done()
                    continue
                admitted.append((job, free.pop()))
            if admitted:
                try:
                    for seq in self._prefill(admitted):
                        active[seq.slot] = seq
                except Exception as exc:  # noqa: BLE001 - reported to every job admitted with it
                    for job, slot in admitted:
                        free.append(slot)
                        self._fail(job, exc)
                        self._done()
                admitted = []
            if not active:
                if stopping:
                    return
                continue
            try:
                finished = self._decode(active)
            except Exception as exc:  # noqa: BLE001 - every job in the batch learns of it
                finished = list(active)
                for seq in active.values():
                    self._fail(seq.job, exc)
            for slot in finished:
                del active[slot]
                free.append(slot)
                self._done()

    def _done(self) -> None:
        with self._lock:
            self._pending -= 1

    def _fail(self, job: _Job, exc: Exception) -> None:
        if isinstance(exc, EnclaveError):
            job.emit(exc)
        else:
            log.exception("engine_failure", model=self.name)
            job.emit(EngineError(f"inference failed: {exc.__class__.__name__}"))

    @torch.inference_mode()
    def _prefill(self, admitted: list[tuple[_Job, int]]) -> list[_Seq]:
        """One forward pass over the prompts of every job admitted together, right-padded. Padding
        writes cache entries past a prompt's end, which decoding overwrites before they are ever
        attended to (the mask only admits positions up to the query's own)."""
        width = max(len(job.ids) for job, _ in admitted)
        rows = [job.ids + [0] * (width - len(job.ids)) for job, _ in admitted]
        tokens = torch.tensor(rows, device=self.device)
        positions = torch.arange(width, device=self.device).expand(len(rows), width)
        slots = torch.tensor([slot for _, slot in admitted], device=self.device)
        last = torch.tensor([len(job.ids) - 1 for job, _ in admitted], device=self.device)
        logits = self._model.step(tokens, slots, positions, width)
        logits = logits[torch.arange(len(rows), device=self.device), last]
        self.stats.host_to_device_bytes += 8 * (2 * len(rows) * width + 2 * len(rows))
        out = []
        for i, (job, slot) in enumerate(admitted):
            req = job.req
            gen = torch.Generator(device=self.device)
            gen.manual_seed(
                req.seed if req.seed is not None else int.from_bytes(os.urandom(8), "little")
            )
            holdback = max((len(x) for x in req.stop), default=1) - 1
            out.append(
                _Seq(
                    job=job,
                    slot=slot,
                    gen=gen,
                    pos=len(job.ids),
                    logits=logits[i],
                    holdback=holdback,
                )
            )
        return out

    @torch.inference_mode()
    def _decode(self, active: dict[int, _Seq]) -> list[int]:
        seqs = list(active.values())
        greedy = [s for s in seqs if s.job.req.temperature <= 0]
        picked: dict[int, torch.Tensor] = {}
        if greedy:
            best = torch.stack([s.logits for s in greedy]).argmax(-1)
            picked.update({s.slot: best[i] for i, s in enumerate(greedy)})
        for s in seqs:
            if s.slot not in picked:
                r = s.job.req
                picked[s.slot] = select(s.logits, r.temperature, r.top_k, r.top_p, s.gen)
        chosen = torch.stack([picked[s.slot] for s in seqs])
        host = chosen.tolist()  # the one device→host copy of this step, for the whole batch
        self.stats.device_to_host_copies += 1
        self.stats.device_to_host_bytes += 8 * len(host)
        self.stats.steps += 1
        finished, going = [], []
        for s, token in zip(seqs, host, strict=True):
            if s.advance(int(token), self._eos, self._tok):
                finished.append(s.slot)
            else:
                going.append((s, token))
        if going:
            kv_len = max(s.pos for s, _ in going) + 1
            tokens = torch.tensor([[t] for _, t in going], device=self.device)
            slots = torch.tensor([s.slot for s, _ in going], device=self.device)
            positions = torch.tensor([[s.pos] for s, _ in going], device=self.device)
            self.stats.host_to_device_bytes += 8 * 3 * len(going)
            logits = self._model.step(tokens, slots, positions, kv_len)[:, -1]
            for i, (s, _) in enumerate(going):
                s.logits = logits[i]
                s.pos += 1
        return finished


@dataclass
class EngineStats:
    """Counters for the benchmark: decode steps and host↔device traffic."""

    steps: int = 0
    device_to_host_copies: int = 0
    device_to_host_bytes: int = 0
    host_to_device_bytes: int = 0


@dataclass
class _Seq:
    job: _Job
    slot: int
    gen: torch.Generator
    pos: int
    logits: torch.Tensor
    holdback: int
    out: list[int] = field(default_factory=list)
    text: str = ""
    emitted_chars: int = 0
    emitted_tokens: int = 0

    def advance(self, token: int, eos: set[int], tok: Tokenizer) -> bool:
        """Take one sampled token; emit ready text; True when the sequence is finished."""
        job, req = self.job, self.job.req
        if job.cancelled.is_set():
            return True
        reason = None
        if token in eos:
            reason = "stop"
        else:
            self.out.append(token)
            self.text = tok.decode(self.out)
            cut = min((i for i in (self.text.find(x) for x in req.stop) if i >= 0), default=-1)
            if cut >= 0:
                self.text, reason = self.text[:cut], "stop"
            elif len(self.out) >= req.max_new_tokens:
                reason = "length"
        if reason is None:
            ready = len(self.text) - self.holdback
            while ready > self.emitted_chars and self.text[ready - 1] == "\ufffd":
                ready -= 1  # an incomplete UTF-8 sequence: wait for the next token
            if ready > self.emitted_chars:
                job.emit(
                    TextDelta(
                        self.text[self.emitted_chars : ready], len(self.out) - self.emitted_tokens
                    )
                )
                self.emitted_chars, self.emitted_tokens = ready, len(self.out)
            return False
        if len(self.text) > self.emitted_chars or len(self.out) > self.emitted_tokens:
            job.emit(
                TextDelta(self.text[self.emitted_chars :], len(self.out) - self.emitted_tokens)
            )
        job.emit(
            Finished(input_tokens=len(job.ids), output_tokens=len(self.out), finish_reason=reason)
        )
        return True


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
