"""Engine: the asyncio face of one loaded model.

`load_engine` checks the weights' digest, loads them once (they stay resident), preallocates the
KV cache and starts the model's scheduler thread. `Engine.generate` validates a request against
the limits (TooLarge / RequestRejected with what was wrong), queues it (Overloaded when the queue
is full) and streams TextDelta items ending with Finished; closing the generator cancels the
request and frees its slot. Logs carry sizes and counts, never prompt or answer text.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import structlog
import torch

from ccgw.enclave.engine.api import (
    EngineLimits,
    EngineStats,
    Finished,
    GenerationRequest,
    TextDelta,
)
from ccgw.enclave.engine.loader import ModelDir, load_model
from ccgw.enclave.engine.model import Transformer
from ccgw.enclave.engine.scheduler import Job, Scheduler
from ccgw.enclave.engine.score import ENGINE_VERSION, Scored, check_answer
from ccgw.enclave.engine.tokenizer import Tokenizer
from ccgw.enclave.errors import EngineError, ModelError, RequestRejected, TooLarge
from ccgw.verify.consistency import (
    CONSISTENT,
    UNVERIFIABLE,
    JobInput,
    Tolerance,
    Verdict,
)

log = structlog.get_logger("enclave.engine")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TEMPERATURE_MAX = 100.0
_STOP_TIMEOUT_S = 30.0


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
        self.name, self.model_sha256, self.device, self.limits = name, model_sha256, device, limits
        self._tok, self._model = tokenizer, model
        eos = (*model.args.eos_token_ids, tokenizer.token_id(tokenizer.eos_token))
        self.eos_token_ids = tuple(sorted({i for i in eos if i is not None}))
        self._vocab = model.args.vocab_size
        dtype = next(model.parameters()).dtype
        self.dtype = str(dtype).removeprefix("torch.")
        self.engine_version = ENGINE_VERSION  # named in receipts (ADR 14)
        model.setup_cache(
            limits.batch_size_max, limits.context_tokens_max, torch.device(device), dtype
        )
        self._scheduler = Scheduler(
            model, tokenizer, self.eos_token_ids, limits, torch.device(device), name
        )
        self._closed = False

    @property
    def stats(self) -> EngineStats:
        return self._scheduler.stats

    def load(self) -> tuple[int, int]:
        """(sequences running, jobs waiting)."""
        return self._scheduler.load()

    def _prepare(self, req: GenerationRequest) -> list[int]:
        lim = self.limits
        if (req.prompt is None) == (req.messages is None):
            raise RequestRejected("exactly one of prompt or messages is required")
        if not 0 < req.max_new_tokens <= lim.new_tokens_max:
            raise TooLarge(f"max_new_tokens must be within 1..{lim.new_tokens_max}")
        if not (math.isfinite(req.temperature) and 0 <= req.temperature <= TEMPERATURE_MAX):
            raise RequestRejected(f"temperature must be within 0..{TEMPERATURE_MAX}")
        if not (math.isfinite(req.top_p) and 0 < req.top_p <= 1):
            raise RequestRejected("top_p must be within (0, 1]")
        if not 0 <= req.top_k <= self._vocab:
            raise RequestRejected(f"top_k must be within 0..{self._vocab} (0 = off)")
        if req.seed is not None and not 0 <= req.seed < 1 << 64:
            raise RequestRejected("seed must be an unsigned 64-bit integer")
        if len(req.stop) > lim.stop_sequences_max or any(
            not s or len(s) > lim.stop_sequence_chars_max for s in req.stop
        ):
            raise TooLarge(
                f"at most {lim.stop_sequences_max} stop sequences of "
                f"1..{lim.stop_sequence_chars_max} characters"
            )
        if req.prompt is not None:
            ids = self._tok.encode(req.prompt, add_special=True)
        else:
            ids = self._tok.encode(self._tok.render_chat(req.messages or ()), add_special=False)
        if not ids:
            raise RequestRejected("the prompt encodes to no tokens")
        cap = min(req.max_input_tokens, lim.prompt_tokens_max)
        if len(ids) > cap:
            raise TooLarge(f"prompt is {len(ids)} tokens; the limit is {cap}")
        if len(ids) + req.max_new_tokens > lim.context_tokens_max:
            raise TooLarge(
                f"prompt ({len(ids)} tokens) + max_new_tokens ({req.max_new_tokens}) exceeds "
                f"the context of {lim.context_tokens_max} tokens"
            )
        return ids

    async def generate(self, req: GenerationRequest) -> AsyncIterator[TextDelta | Finished]:
        """TextDelta items, then Finished (always last). aclose() cancels and frees the slot."""
        if self._closed:
            raise EngineError("the engine is shut down")
        ids = self._prepare(req)
        seed = req.seed if req.seed is not None else secrets.randbits(64)
        job = Job(req=req, ids=ids, seed=seed, loop=asyncio.get_running_loop())
        self._scheduler.submit(job)
        log.debug("job_queued", model=self.name, input_tokens=len(ids))
        try:
            while True:
                item = await job.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            self._scheduler.cancel(job)

    async def score(
        self,
        job: JobInput,
        answer: str,
        finish_reason: str,
        output_tokens: int,
        tol: Tolerance = Tolerance(),  # noqa: B008 - frozen
    ) -> tuple[Verdict, Scored]:
        """Spot check (ADR 14): one teacher-forced pass over prompt + claimed answer, on a thread
        next to the scheduler's (a private KV buffer; the weights are only read)."""
        if self._closed:
            raise EngineError("the engine is shut down")
        verdict, scored = await asyncio.to_thread(
            check_answer,
            self._model,
            self._tok,
            self.eos_token_ids,
            job,
            answer,
            finish_reason,
            output_tokens,
            tol,
        )
        if verdict.inconsistent and len(scored.answer) != output_tokens:
            verdict = await self._split_mismatch(job, answer, finish_reason, output_tokens, verdict)
        return verdict, scored

    async def _split_mismatch(
        self, job: JobInput, answer: str, finish_reason: str, output_tokens: int, found: Verdict
    ) -> Verdict:
        """The text re-encodes to another number of tokens than the worker signed: a sampled
        answer may split its text differently from the tokenizer's canonical encoding (a rare
        word sampled piece by piece), and then the tokens scored are not the worker's. Greedy and
        seeded decoding are deterministic, so the verifier regenerates: the same text, finish and
        count acquit the worker; anything else keeps the verdict. Unseeded sampling cannot be
        regenerated: when the text re-encodes to fewer tokens than signed (as a piecewise split
        does: the tokenizer's merges make its own encoding the shorter one), the split is
        unrecoverable from text and the answer is unverifiable — never passed, never disputed;
        more tokens than signed is no split of the worker's, and the verdict stands."""
        d, n = job.decoding, found.answer_tokens
        mismatch = f"the text re-encodes to {n} tokens, the receipt counts {output_tokens}"
        if not (d.greedy or d.seeded):
            if n > output_tokens:
                return found
            return Verdict(
                UNVERIFIABLE,
                None,
                f"{mismatch}: the worker's token split cannot be recovered from text, and "
                "unseeded sampling cannot be regenerated",
                n,
                found.checked_tokens,
            )
        req = GenerationRequest(
            prompt=job.prompt,
            messages=job.messages,
            max_new_tokens=d.max_tokens,
            max_input_tokens=self.limits.context_tokens_max,
            temperature=float(d.temperature),
            top_p=float(d.top_p),
            top_k=d.top_k,
            seed=int(d.seed) if d.seeded else None,
            stop=job.stop,
        )
        parts: list[str] = []
        fin: Finished | None = None
        async for ev in self.generate(req):
            if isinstance(ev, TextDelta):
                parts.append(ev.text)
            else:
                fin = ev
        if (
            fin is not None
            and "".join(parts) == answer
            and (fin.finish_reason, fin.output_tokens) == (finish_reason, output_tokens)
        ):
            return Verdict(
                CONSISTENT,
                None,
                f"{mismatch}; regenerated exactly (same text, finish and token count)",
                output_tokens,
                output_tokens,
            )
        return found

    async def aclose(self) -> None:
        """Stop the scheduler thread once the jobs it holds are done."""
        self._closed = True
        await asyncio.to_thread(self._scheduler.stop, _STOP_TIMEOUT_S)


def load_engine(
    model_dir: Path,
    name: str,
    *,
    expected_sha256: bytes | None = None,
    device: str = "cpu",
    limits: EngineLimits = EngineLimits(),  # noqa: B008 - frozen, so sharing it is safe
    dtype: str = "float32",
) -> Engine:
    if dtype not in DTYPES:
        raise ModelError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    try:
        limits.check()
    except ValueError as exc:
        raise EngineError(str(exc)) from exc
    md = ModelDir(Path(model_dir), expected_sha256)  # the digest is checked here, first
    model, digest = load_model(md, None, device, DTYPES[dtype])
    tok = Tokenizer(md)
    if tok.vocab_size > model.args.vocab_size:
        raise ModelError(
            f"the tokenizer has {tok.vocab_size} tokens but the model only {model.args.vocab_size}"
        )
    engine = Engine(model, tok, name, digest, device, limits)
    log.info(
        "model_loaded",
        model=name,
        sha256=digest.hex(),
        device=device,
        dtype=dtype,
        family=model.args.family,
        kv_cache_bytes=model.cache_bytes(),
    )
    return engine
