"""Continuous batching on one thread: every live sequence shares each decode pass.

One loop, on a dedicated thread so inference never blocks the worker's event loop:
  1. drop cancelled sequences and compact the slots (live sequences stay in slots 0..n-1);
  2. admit waiting jobs into free slots and prefill them (several prompts per pass, padded);
  3. one decode step for every live sequence.
Per decode step the device does the forward pass, the sampling and the end-of-sequence check for
the whole batch; the host receives ONE small copy (8 bytes per sequence: token id and eos flag)
and uses it to detokenise and check stop sequences. Inputs for the next step (tokens, positions,
sampling parameters, random counters) stay on the device and are only re-uploaded when the batch
changes. Memory is bounded up front: the KV cache has batch_size_max slots of context_tokens_max.

Jobs talk to this thread through `Job`: a thread-safe state and an asyncio queue fed with
`call_soon_threadsafe`. A job cancelled while queued is dropped at once; a live one releases its
slot before the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
import torch

from ccgw.enclave.engine.api import (
    EngineLimits,
    EngineStats,
    Finished,
    GenerationRequest,
    TextDelta,
)
from ccgw.enclave.engine.detok import Chunk, IncrementalDecoder, StopFilter
from ccgw.enclave.engine.model import Transformer
from ccgw.enclave.engine.sampling import BatchSampling, select
from ccgw.enclave.engine.tokenizer import Tokenizer
from ccgw.enclave.errors import EnclaveError, EngineError, Overloaded

log = structlog.get_logger("enclave.engine")

Event = TextDelta | Finished | BaseException
_QUEUED, _ADMITTED, _CANCELLED = "queued", "admitted", "cancelled"
# An idle engine that receives a job waits while more keep arriving (each within _BURST_GAP_S,
# _BURST_GATHER_MAX_S in all) so that a burst shares one prefill pass instead of the first request
# being prefilled alone and the others after it: on CPU that halved the mean time to first token
# of a burst of 32 (docs/benchmarks.md), for at most 2 ms more on a lone request.
_BURST_GAP_S = 0.002
_BURST_GATHER_MAX_S = 0.010


@dataclass
class Job:
    req: GenerationRequest
    ids: list[int]
    seed: int  # 64 bits, drawn at random when the request names none
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    state: str = _QUEUED  # guarded by Scheduler._lock
    cancelled: threading.Event = field(default_factory=threading.Event)

    def emit(self, item: Event) -> None:
        _deliver(self.loop, [(self, item)])


def _deliver(loop: asyncio.AbstractEventLoop, items: list[tuple[Job, Event]]) -> None:
    """Hand events to their jobs on `loop` with one wake-up for all of them."""

    def put() -> None:
        for job, item in items:
            job.out.put_nowait(item)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
        loop.call_soon_threadsafe(put)


@dataclass
class _Seq:
    """A job in a cache slot. `last` is sampled but not yet in the cache; `length` tokens are."""

    job: Job
    slot: int
    length: int
    last: int
    drawn: int  # tokens sampled so far (the random counter of its next draw)
    decoder: IncrementalDecoder
    stops: StopFilter
    output_tokens: int = 0
    done: bool = False


class Scheduler:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        eos_ids: tuple[int, ...],
        limits: EngineLimits,
        device: torch.device,
        name: str,
    ) -> None:
        self._model, self._tok, self._limits = model, tokenizer, limits
        self._device, self._name = device, name
        self._eos = torch.tensor(sorted(set(eos_ids)) or [-1], device=device)
        self._inbox: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._broken = False  # set once the thread has ended; no job is accepted after
        self._seqs: list[_Seq] = []  # index == slot
        self._batch_dirty = True
        self._tokens = torch.empty(0, dtype=torch.long, device=device)
        self._positions = torch.empty(0, dtype=torch.long, device=device)
        self._sampling: BatchSampling | None = None
        self._outbox: list[tuple[Job, Event]] = []
        self.stats = EngineStats()
        self._thread = threading.Thread(target=self._run, name=f"engine-{name}", daemon=True)
        self._thread.start()

    # -- called from the event loop ----------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self._lock:
            if self._broken:
                raise EngineError("the engine is shut down or failed")
            if self._waiting >= self._limits.queued_jobs_max:
                raise Overloaded(
                    f"engine queue is full ({self._limits.queued_jobs_max} jobs waiting); retry later"
                )
            self._waiting += 1
            self._inbox.put(job)  # under the lock: the thread's final drain cannot miss it

    def cancel(self, job: Job) -> None:
        job.cancelled.set()
        with self._lock:
            if job.state == _QUEUED:  # frees its queue place now; the thread skips it later
                job.state = _CANCELLED
                self._waiting -= 1

    def load(self) -> tuple[int, int]:
        """(live sequences, waiting jobs), for tests and metrics."""
        with self._lock:
            return len(self._seqs), self._waiting

    def stop(self, timeout_s: float) -> None:
        self._inbox.put(None)
        self._thread.join(timeout_s)

    # -- the scheduler thread ----------------------------------------------------------------
    def _run(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.set_device(self._device)  # the current device is per thread
        if self._device.type == "cpu":
            # Leave a core to the event loop (and to the OpenMP pool of any thread that ran torch
            # before us): two OpenMP pools competing for every core made each decode step ~3x
            # slower on a 2-core machine. The setting is per thread; other threads keep theirs.
            torch.set_num_threads(max(1, torch.get_num_threads() - 1))
        try:
            with torch.inference_mode():
                self._loop()
        except Exception as exc:  # noqa: BLE001 - the thread must not die silently
            log.error("engine_thread_failed", model=self._name, error=type(exc).__name__)
            self._fail_everything(EngineError("the engine failed; the worker needs a restart"))
        else:
            self._fail_everything(EngineError("the engine is shut down"))

    def _loop(self) -> None:
        stopping = False
        while True:
            self._compact()
            admitted, stopping = self._admit(stopping)
            if admitted:
                self._guarded(admitted, self._prefill)
                self._compact()
            if self._seqs:
                self._guarded(list(self._seqs), lambda _: self._decode())
            elif stopping:
                return

    def _fail_everything(self, exc: EngineError) -> None:
        """Nobody may wait forever: live and queued jobs learn that the engine is gone."""
        with self._lock:
            self._broken = True
        self._flush()
        for s in self._seqs:
            if not s.done:
                s.job.emit(exc)
        self._seqs = []
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.emit(exc)

    def _guarded(self, seqs: list[_Seq], work: Callable[[list[_Seq]], None]) -> None:
        try:
            work(seqs)
        except Exception as exc:  # noqa: BLE001 - every sequence in the pass learns of it
            self._flush()  # what was produced before the failure goes first
            if not isinstance(exc, EnclaveError):
                log.error("engine_failure", model=self._name, error=type(exc).__name__)
                exc = EngineError(f"inference failed ({type(exc).__name__}); retry the request")
            for s in seqs:
                if not s.done:
                    s.done = True
                    s.job.emit(exc)
            self._batch_dirty = True

    def _admit(self, stopping: bool) -> tuple[list[_Seq], bool]:
        """Jobs from the inbox into free slots; blocks only when nothing is live."""
        jobs: list[Job] = []
        budget = self._limits.batch_size_max - len(self._seqs)
        gather_until = 0.0
        while budget > len(jobs) and not stopping:
            try:
                if self._seqs:  # sequences are decoding: take only what is already queued
                    job = self._inbox.get(block=False)
                elif not jobs:  # idle: sleep until work arrives
                    job = self._inbox.get()
                    gather_until = time.monotonic() + _BURST_GATHER_MAX_S
                else:  # idle engine, first job in hand: let a burst's other requests join it
                    wait = min(_BURST_GAP_S, gather_until - time.monotonic())
                    job = self._inbox.get(timeout=wait) if wait > 0 else self._inbox.get(False)
            except queue.Empty:
                break
            if job is None:
                stopping = True
                break
            with self._lock:
                if job.state == _CANCELLED:
                    continue
                job.state = _ADMITTED
                self._waiting -= 1
            jobs.append(job)
        first = len(self._seqs)
        seqs = [
            _Seq(
                job=j,
                slot=first + i,
                length=len(j.ids),
                last=-1,
                drawn=0,
                decoder=self._tok.stream(),
                stops=StopFilter(j.req.stop),
            )
            for i, j in enumerate(jobs)
        ]
        self._seqs.extend(seqs)
        if seqs:
            self._batch_dirty = True
        return seqs, stopping

    def _compact(self) -> None:
        """Drop finished and cancelled sequences; move live ones into the freed low slots."""
        for s in self._seqs:
            if s.job.cancelled.is_set():
                s.done = True
        if not any(s.done for s in self._seqs):
            return
        live = [s for s in self._seqs if not s.done]
        n = len(live)
        holes = [s.slot for s in self._seqs[:n] if s.done]
        movers = [s for s in self._seqs[n:] if not s.done]
        for dst, s in zip(holes, movers, strict=True):
            self._model.move_slot(s.slot, dst, s.length)
            s.slot = dst
            self.stats.slot_moves += 1
        with self._lock:
            self._seqs = sorted(live, key=lambda s: s.slot)
        self._batch_dirty = True

    def _prefill(self, seqs: list[_Seq]) -> None:
        """Prompts in groups whose padded size fits prefill_tokens_max; first token sampled."""
        group: list[_Seq] = []
        for s in seqs:
            width = max(len(x.job.ids) for x in [*group, s])
            if group and width * (len(group) + 1) > self._limits.prefill_tokens_max:
                self._prefill_group(group)
                group = []
            group.append(s)
        self._prefill_group(group)

    def _prefill_group(self, seqs: list[_Seq]) -> None:
        width = max(len(s.job.ids) for s in seqs)
        padded = [s.job.ids + [0] * (width - len(s.job.ids)) for s in seqs]
        tokens = torch.tensor(padded, dtype=torch.long, device=self._device)
        last = torch.tensor([len(s.job.ids) - 1 for s in seqs], device=self._device)
        logits = self._model.extend(tokens, first_slot=seqs[0].slot, kv_len=width, last=last)
        sampling = self._sampling_for(seqs)
        self._accept(seqs, self._pick(logits, sampling))
        self.stats.prefills += 1

    def _decode(self) -> None:
        seqs = self._seqs
        if self._batch_dirty:
            self._upload(seqs)
        assert self._sampling is not None
        kv_len = max(s.length for s in seqs) + 1
        logits = self._model.extend(
            self._tokens[:, None], positions=self._positions, kv_len=kv_len
        )[:, -1]
        packed = self._pick(logits, self._sampling)
        self._tokens = packed // 2
        self._positions += 1
        for s in seqs:
            s.length += 1
        self.stats.steps += 1
        self.stats.step_rows += len(seqs)
        self.stats.device_to_host_copies += 1
        self.stats.device_to_host_bytes += 8 * len(seqs)
        self._accept(seqs, packed)

    def _pick(self, logits: torch.Tensor, sampling: BatchSampling) -> torch.Tensor:
        """Sample and check end-of-sequence on the device: token * 2 + is_eos, [n] int64."""
        tokens = select(logits, sampling)
        return tokens * 2 + torch.isin(tokens, self._eos).long()

    def _sampling_for(self, seqs: list[_Seq]) -> BatchSampling:
        reqs = [s.job.req for s in seqs]
        ints = torch.tensor(
            [
                [r.top_k for r in reqs],
                [s.job.seed & 0xFFFFFFFF for s in seqs],
                [s.job.seed >> 32 for s in seqs],
                [s.drawn for s in seqs],
            ],
            dtype=torch.long,
            device=self._device,
        )
        floats = torch.tensor(
            [[r.temperature for r in reqs], [r.top_p for r in reqs]],
            dtype=torch.float32,
            device=self._device,
        )
        return BatchSampling(
            temperature=floats[0],
            top_p=floats[1],
            top_k=ints[0],
            seed_lo=ints[1],
            seed_hi=ints[2],
            counter=ints[3].clone(),
            sampled=any(r.temperature > 0 for r in reqs),
            filtered=any(r.temperature > 0 and (r.top_k > 0 or r.top_p < 1) for r in reqs),
        )

    def _upload(self, seqs: list[_Seq]) -> None:
        """The batch changed: rebuild the device-side inputs from what the host knows."""
        self._sampling = self._sampling_for(seqs)
        both = torch.tensor(
            [[s.last for s in seqs], [s.length for s in seqs]],
            dtype=torch.long,
            device=self._device,
        )
        self._tokens, self._positions = both[0], both[1].clone()
        self.stats.host_to_device_bytes += 8 * 6 * len(seqs) + 4 * 2 * len(seqs)
        self._batch_dirty = False

    # -- host side of each step: text, stops, limits -----------------------------------------
    def _accept(self, seqs: list[_Seq], packed: torch.Tensor) -> None:
        host = packed.tolist()  # the one device→host copy of this pass
        for s, value in zip(seqs, host, strict=True):
            token, is_eos = value >> 1, value & 1
            s.last, s.drawn = token, s.drawn + 1
            if s.job.cancelled.is_set():
                s.done = True
            elif is_eos:
                self._finish(s, "stop")
            else:
                s.output_tokens += 1
                self._send(s, s.stops.feed(s.decoder.push(token), 1))
                if s.stops.stopped:
                    self._finish(s, "stop")
                elif s.output_tokens >= s.job.req.max_new_tokens:
                    self._finish(s, "length")
        self._flush()

    def _send(self, s: _Seq, chunk: Chunk | None) -> None:
        if chunk is not None:
            self._outbox.append((s.job, TextDelta(chunk.text, chunk.tokens)))

    def _flush(self) -> None:
        """One wake-up per event loop per pass, not one per token: the loop thread then competes
        less with the intra-op threads of the next forward pass."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Job, Event]]] = {}
        for job, item in self._outbox:
            by_loop.setdefault(job.loop, []).append((job, item))
        self._outbox = []
        for loop, items in by_loop.items():
            _deliver(loop, items)

    def _finish(self, s: _Seq, reason: str) -> None:
        if not s.stops.stopped:
            self._send(s, s.stops.feed(s.decoder.flush(), 0))
            if s.stops.stopped:
                reason = "stop"
        self._send(s, s.stops.finish())
        self._outbox.append((s.job, Finished(len(s.job.ids), s.output_tokens, reason)))
        s.done = True
