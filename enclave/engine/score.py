"""The scoring pass: one teacher-forced forward pass over prompt + claimed answer (ADR 14).

Instead of regenerating an answer (as many decode steps as it has tokens, and sampling that a
verifier could only reproduce bit for bit on the same hardware), a verifier runs the pinned model
once over prompt + answer and reads, for every claimed token, the logits the model gives at its
position. `verify.consistency.verdict` turns those into the verdict; this module computes them.

The pass uses a private KV buffer of its own, never the scheduler's slot cache, so it can run on
any thread next to live decoding (the weights are only read). Rows are computed on the device in
one go: the claimed token's logit, the argmax, its rank, the k-th best logit, the tempered and
filtered mass of the tokens better than it by more than the margin, and for seeded sampling the
sampler's own counter-based draw and the claimed token's cumulative interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ccgw.enclave.engine.model import Step, Transformer
from ccgw.enclave.engine.sampling import uniforms
from ccgw.enclave.engine.tokenizer import Tokenizer
from ccgw.enclave.errors import TooLarge
from ccgw.verify.consistency import Decoding, JobInput, TokenScore, Tolerance, Verdict, verdict

# Bumped whenever a change to the engine can change which tokens it picks for the same weights;
# receipts name it so a verifier knows which numerics produced an answer.
ENGINE_VERSION = "ccgw-torch/2"  # 2: unfiltered seeded rows draw in vocabulary order in any batch


@dataclass(frozen=True)
class Scored:
    answer: tuple[TokenScore, ...]
    ends: dict[str, tuple[TokenScore, ...]]  # "eos:<id>" / "stop:<i>" → scores of that end


def forward_logits(model: Transformer, ids: Sequence[int], first: int = 0) -> torch.Tensor:
    """float32 logits [len(ids) - first, vocab] of one sequence from position `first` on, on a
    private KV buffer (the prompt's rows skip the vocabulary projection: with a large vocabulary
    that is most of the memory)."""
    assert model.cos is not None, "setup_cache first (it also sizes the RoPE table)"
    t = len(ids)
    if t > model.cos.shape[0]:
        raise TooLarge(f"{t} tokens to score exceed the engine's context of {model.cos.shape[0]}")
    a = model.args
    weight = model.model.embed_tokens.weight
    shape = (1, a.num_kv_heads, t, a.head_dim)
    tokens = torch.tensor([list(ids)], dtype=torch.long, device=weight.device)
    step = Step(model, 1, t, 0, 0, None, t)
    x = model.model.embed_tokens(tokens)
    for layer in model.model.layers:
        cache = (
            torch.empty(shape, device=weight.device, dtype=weight.dtype),
            torch.empty(shape, device=weight.device, dtype=weight.dtype),
        )
        x = layer(x, cache, step)
    logits: torch.Tensor = model.lm_head(model.model.norm(x[0, first:]))
    return logits.float()


def score_rows(
    logits: torch.Tensor,
    claimed: Sequence[int],
    counters: Sequence[int],
    d: Decoding,
    margin: float,
) -> list[TokenScore]:
    """TokenScore per row: `logits[i]` is the model's distribution for `claimed[i]`, drawn at
    random counter `counters[i]` (the index of the token in the answer)."""
    n, vocab = logits.shape
    if n == 0:
        return []
    dev = logits.device
    tok = torch.tensor(list(claimed), dtype=torch.long, device=dev)
    mine = logits.gather(1, tok[:, None])[:, 0]
    top_logit, top_token = logits.max(-1)
    rank = (logits > mine[:, None]).sum(-1)
    k = min(d.top_k, vocab)
    kth = logits.topk(k, dim=-1).values[:, -1] if k > 0 else None
    mass = torch.zeros(n, device=dev)
    draw = lo = hi = lo2 = hi2 = None
    if not d.greedy:
        scaled = logits / max(float(d.temperature), 1e-6)
        if kth is not None:  # the sampler keeps exactly the k best (ties: either)
            scaled = scaled.masked_fill(logits < kth[:, None], float("-inf"))
        probs = torch.softmax(scaled, dim=-1)
        mass = probs.masked_fill(logits <= mine[:, None] + margin, 0.0).sum(-1)
        if d.seeded:
            c = torch.tensor(list(counters), dtype=torch.long, device=dev)
            seed = int(d.seed)
            u = uniforms(torch.full_like(c, seed & 0xFFFFFFFF), torch.full_like(c, seed >> 32), c)
            draw = u.tolist()
            # A filtered row draws over the probabilities sorted best first. An unfiltered row
            # draws in vocabulary order, unless a filtered row shares its batch (the sampler then
            # sorts every row): both intervals are computed and either one passes.
            lo, hi = _interval(probs, tok, d, sort=True)
            if not d.filtered:
                lo2, hi2 = _interval(probs, tok, d, sort=False)
    rows = zip(
        claimed,
        mine.tolist(),
        top_token.tolist(),
        top_logit.tolist(),
        rank.tolist(),
        kth.tolist() if kth is not None else [None] * n,
        mass.tolist(),
        strict=True,
    )
    return [
        TokenScore(
            token=int(t),
            logit=float(lg),
            top_token=int(tt),
            top_logit=float(tl),
            rank=int(r),
            kth_logit=None if kl is None else float(kl),
            mass_above=float(m),
            draw=None if draw is None else float(draw[i]),
            cum_lo=None if lo is None else float(lo[i]),
            cum_hi=None if hi is None else float(hi[i]),
            cum_lo2=None if lo2 is None else float(lo2[i]),
            cum_hi2=None if hi2 is None else float(hi2[i]),
        )
        for i, (t, lg, tt, tl, r, kl, m) in enumerate(rows)
    ]


def _interval(
    probs: torch.Tensor, tok: torch.Tensor, d: Decoding, sort: bool
) -> tuple[list[float], list[float]]:
    """[lo, hi) of each claimed token in the normalised cumulative mass the sampler draws from.

    Sorted (best first): tokens of equal probability may come in any order (the sort is not
    stable, and random weights tie a lot), so the interval spans the claimed token's whole tie
    group: lo = the mass of strictly better tokens, hi = lo + the mass of its ties."""
    if not sort:
        cum = probs.cumsum(-1)
        total = cum[:, -1:].clamp(min=1e-30)
        hi = cum.gather(1, tok[:, None])
        lo = hi - probs.gather(1, tok[:, None])
        return (lo / total)[:, 0].tolist(), (hi / total)[:, 0].tolist()
    kept = probs
    if float(d.top_p) < 1.0:
        sp, order = probs.sort(-1, descending=True)
        before = sp.cumsum(-1) - sp
        kept = torch.zeros_like(probs).scatter(
            -1, order, sp.masked_fill(before > float(d.top_p), 0.0)
        )
    total = kept.sum(-1).clamp(min=1e-30)
    mine = probs.gather(1, tok[:, None])
    lo = (kept * (probs > mine)).sum(-1)
    hi = lo + (kept * (probs == mine)).sum(-1)
    return (lo / total).tolist(), (hi / total).tolist()


def score_ids(
    model: Transformer,
    prompt_ids: Sequence[int],
    answer_ids: Sequence[int],
    d: Decoding,
    *,
    eos_ids: Sequence[int] = (),
    stop_ids: Sequence[Sequence[int]] = (),
    margin: float = Tolerance().logit_margin,
) -> Scored:
    """Score `answer_ids` after `prompt_ids`, and each way the answer could have ended: one pass
    over prompt + answer (its last row scores every end-of-sequence id), plus one short pass per
    stop sequence."""
    if not prompt_ids:
        raise ValueError("the prompt has no tokens")
    p, n = len(prompt_ids), len(answer_ids)
    with torch.inference_mode():
        logits = forward_logits(model, [*prompt_ids, *answer_ids], p - 1)  # [n + 1, vocab]
        answer = score_rows(logits[:n], answer_ids, range(n), d, margin)
        ends: dict[str, tuple[TokenScore, ...]] = {}
        for e in eos_ids:
            ends[f"eos:{e}"] = tuple(score_rows(logits[n:], [e], [n], d, margin))
        for i, s in enumerate(stop_ids):
            if not s:
                continue
            tail = forward_logits(model, [*prompt_ids, *answer_ids, *s], p + n - 1)[:-1]
            ends[f"stop:{i}"] = tuple(score_rows(tail, s, range(n, n + len(s)), d, margin))
    return Scored(tuple(answer), ends)


def encode_input(tokenizer: Tokenizer, job: JobInput) -> list[int]:
    """The prompt's token ids exactly as Engine.generate builds them."""
    if job.prompt is not None:
        return tokenizer.encode(job.prompt, add_special=True)
    return tokenizer.encode(tokenizer.render_chat(job.messages or ()), add_special=False)


def check_answer(
    model: Transformer,
    tokenizer: Tokenizer,
    eos_ids: Sequence[int],
    job: JobInput,
    answer: str,
    finish_reason: str,
    output_tokens: int,
    tol: Tolerance = Tolerance(),  # noqa: B008 - frozen
) -> tuple[Verdict, Scored]:
    """The whole check of one claimed answer: tokenise, score, decide."""
    prompt_ids = encode_input(tokenizer, job)
    answer_ids = tokenizer.encode(answer, add_special=False)
    stops = [tokenizer.encode(s, add_special=False) for s in job.stop]
    scored = score_ids(
        model,
        prompt_ids,
        answer_ids,
        job.decoding,
        eos_ids=eos_ids,
        stop_ids=stops,
        margin=tol.logit_margin,
    )
    lossy = answer.find("\ufffd")
    lossless = None if lossy < 0 else max(0, len(tokenizer.encode(answer[:lossy], False)) - 1)
    v = verdict(
        job.decoding, finish_reason, output_tokens, scored.answer, scored.ends, tol, lossless
    )
    return v, scored
