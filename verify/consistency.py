"""Spot checks, the pure half (ADR 14): is a claimed answer consistent with the model under the
decoding parameters its receipt states? Shared by the worker that signs the receipt, the client,
the auditor's canaries and the gateway's re-check of a dispute. No torch here: the scores come from
one teacher-forced forward pass (`enclave.engine.score`), the rule below turns them into a verdict.

Commitments (what receipt v3 binds, without leaking the prompt into the public log):

    salt          = HMAC-SHA256(response key, "ccgw/v1/commit-salt")   known to client and worker
    input_commit  = SHA-256("ccgw/v1/input-commit\\0" || salt || canonical JSON of the input)
    output_commit = SHA-256("ccgw/v1/output-commit\\0" || salt || UTF-8 answer text)

The canonical input covers the prompt (or chat messages), the stop sequences and every decoding
parameter, spelled exactly as the wire carries them (floats are float32: `f32`). Revealing the salt
opens the commitments for one job only; the response key stays secret.

The rule, per claimed token (the margins are `Tolerance`, chosen from the measured spread between
dtypes and batch compositions; docs/benchmarks.md):
  greedy (temperature 0)   the token's logit is within `logit_margin` of the argmax's;
  top-k                    its logit is within `logit_margin` of the k-th best logit;
  top-p                    the probability of the tokens better than it by more than the margin
                           is at most top_p + `mass_margin` (the sampler keeps such a token);
  seeded                   the counter-based draw falls within its cumulative interval
                           (± `mass_margin`): the engine's sampler is reproducible per row.
Unfiltered, unseeded sampling admits every token: such answers are `unverifiable`, never passed.
Then the end: `length` needs exactly max_tokens tokens; `stop` needs the end-of-sequence token
(or one of the stop sequences) to be a consistent next token there, and the token counts to
match the receipt: a truncated answer fails here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify.receipts import Receipt

SALT_LABEL = b"ccgw/v1/commit-salt"
INPUT_LABEL = b"ccgw/v1/input-commit\0"
OUTPUT_LABEL = b"ccgw/v1/output-commit\0"
SALT_BYTES = 32

CONSISTENT, INCONSISTENT, UNVERIFIABLE = "consistent", "inconsistent", "unverifiable"
STATUSES = (CONSISTENT, INCONSISTENT, UNVERIFIABLE)


def f32(x: float) -> str:
    """A float as the wire's float32 carries it, spelled the one way (shortest round trip)."""
    if not math.isfinite(x):
        raise ValueError("decoding parameters are finite")
    return repr(struct.unpack("<f", struct.pack("<f", x))[0])


def commit_salt(response_key: bytes) -> bytes:
    return hmac.new(response_key, SALT_LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class Decoding:
    """Decoding parameters as the receipt states them (floats in their float32 spelling)."""

    temperature: str = "0.0"
    top_p: str = "1.0"
    top_k: int = 0
    max_tokens: int = 0
    seed: str = ""  # decimal u64, "" when the request named none (the engine drew one)
    stop_count: int = 0

    @property
    def greedy(self) -> bool:
        return float(self.temperature) <= 0.0

    @property
    def filtered(self) -> bool:
        return self.top_k > 0 or float(self.top_p) < 1.0

    @property
    def seeded(self) -> bool:
        return self.seed != ""

    @classmethod
    def of(
        cls,
        temperature: float,
        top_p: float,
        top_k: int,
        max_tokens: int,
        seed: int | None,
        stop: Sequence[str],
    ) -> Decoding:
        return cls(
            f32(temperature),
            f32(top_p if top_p > 0 else 1.0),
            top_k,
            max_tokens,
            "" if seed is None else str(seed),
            len(stop),
        )


@dataclass(frozen=True)
class JobInput:
    """What the client asked: the one place prompt text lives in a dispute (never in the log)."""

    prompt: str | None
    messages: tuple[tuple[str, str], ...] | None
    stop: tuple[str, ...]
    decoding: Decoding

    def canonical(self) -> bytes:
        obj: dict[str, Any] = {
            "decoding": asdict(self.decoding),
            "stop": list(self.stop),
        }
        if self.prompt is not None:
            obj["prompt"] = self.prompt
        else:
            obj["messages"] = [list(m) for m in self.messages or ()]
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "messages": None if self.messages is None else [list(m) for m in self.messages],
            "stop": list(self.stop),
            "decoding": asdict(self.decoding),
        }

    @classmethod
    def from_json(cls, o: Mapping[str, Any]) -> JobInput:
        d = o["decoding"]
        decoding = Decoding(
            str(d["temperature"]),
            str(d["top_p"]),
            int(d["top_k"]),
            int(d["max_tokens"]),
            str(d["seed"]),
            int(d["stop_count"]),
        )
        msgs = o.get("messages")
        prompt = o.get("prompt")
        if (prompt is None) == (msgs is None):
            raise ValueError("exactly one of prompt and messages")
        return cls(
            None if prompt is None else str(prompt),
            None if msgs is None else tuple((str(r), str(c)) for r, c in msgs),
            tuple(str(s) for s in o["stop"]),
            decoding,
        )


def input_commit(salt: bytes, job: JobInput) -> str:
    return hashlib.sha256(INPUT_LABEL + salt + job.canonical()).hexdigest()


class OutputCommitter:
    """Streaming output commitment: the worker feeds the answer text as it goes."""

    def __init__(self, salt: bytes) -> None:
        self._h = hashlib.sha256(OUTPUT_LABEL + salt)

    def update(self, text: str) -> None:
        self._h.update(text.encode("utf-8", "surrogatepass"))

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def output_commit(salt: bytes, answer: str) -> str:
    c = OutputCommitter(salt)
    c.update(answer)
    return c.hexdigest()


def decoding_of(inner: pb.InnerRequest, max_tokens: int) -> Decoding:
    """The decoding parameters of a request, as the worker's engine applies them."""
    s = inner.sampling
    seed = s.seed if s.HasField("seed") else None
    return Decoding.of(s.temperature, s.top_p, s.top_k, max_tokens, seed, tuple(s.stop))


def job_input_of(inner: pb.InnerRequest, max_tokens: int) -> JobInput | None:
    """The committed input of a text job; None for an embedding job (nothing to spot-check)."""
    kind = inner.WhichOneof("input")
    if kind not in ("prompt", "chat"):
        return None
    return JobInput(
        inner.prompt if kind == "prompt" else None,
        tuple((m.role, m.content) for m in inner.chat.messages) if kind == "chat" else None,
        tuple(inner.sampling.stop),
        decoding_of(inner, max_tokens),
    )


def receipt_claims(
    inner: pb.InnerRequest, max_tokens: int, answer_text: str | None
) -> dict[str, str | int]:
    """The v3 claims a receipt must carry for this request and answer (the worker signs them,
    the client checks them). `answer_text` None: the worker fills output_commit itself."""
    d = decoding_of(inner, max_tokens)
    job = job_input_of(inner, max_tokens)
    salt = commit_salt(bytes(inner.response_key))
    out: dict[str, str | int] = {**asdict(d)}
    out["input_commit"] = "" if job is None else input_commit(salt, job)
    if answer_text is not None:
        out["output_commit"] = "" if job is None else output_commit(salt, answer_text)
    return out


def receipt_decoding(r: Receipt) -> Decoding:
    return Decoding(r.temperature, r.top_p, r.top_k, r.max_tokens, r.seed, r.stop_count)


# -- scores and the rule -------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """How far a claimed token may sit from what the verifier computes and still pass. Measured,
    not guessed: bench/spotcheck_bench.py prints the largest gap honest workers showed across
    dtypes and batch compositions; the defaults leave a wide multiple of it."""

    logit_margin: float = 1.0  # logits
    mass_margin: float = 0.05  # probability

    def to_json(self) -> dict[str, float]:
        return asdict(self)


# Logit margin by the least precise dtype of the worker (its receipt's `dtype`) and the verifier.
# Measured (bench/spotcheck_bench.py, docs/benchmarks.md) on the tiny random model, whose logits
# are large (|logit| up to ~20): float32 pairs showed no gap at all; single bfloat16 logits were
# up to 2.3 off the float32 ones, and a claimed token's gap to a better one moves by the sum of two
# such errors (one honest top-p token was 4.6 logits behind under float32 and passed in bfloat16).
# Each margin leaves headroom over the largest difference seen. Unknown dtypes get the widest.
LOGIT_MARGINS = {"float32": 1.0, "float16": 5.0, "bfloat16": 5.0}
LOGIT_MARGIN_UNKNOWN = 5.0


def tolerance_for(*dtypes: str) -> Tolerance:
    """The tolerance for a check between parties computing in these dtypes."""
    margin = max(LOGIT_MARGINS.get(d, LOGIT_MARGIN_UNKNOWN) for d in dtypes) if dtypes else 1.0
    return Tolerance(logit_margin=margin)


@dataclass(frozen=True)
class TokenScore:
    """One claimed token under the verifier's model (one row of the teacher-forced pass)."""

    token: int
    logit: float
    top_token: int
    top_logit: float
    rank: int  # tokens whose logit is strictly higher
    kth_logit: float | None  # the k-th highest logit when top_k > 0
    mass_above: float  # tempered, top-k-filtered probability of tokens better by > logit_margin
    draw: float | None  # seeded: the sampler's uniform for this token's counter
    cum_lo: float | None  # seeded: the claimed token's interval of the normalised cumulative mass
    cum_hi: float | None
    cum_lo2: float | None = None  # unfiltered seeded: the interval in vocabulary order
    cum_hi2: float | None = None


@dataclass(frozen=True)
class Verdict:
    status: str  # CONSISTENT | INCONSISTENT | UNVERIFIABLE
    position: int | None  # first inconsistent answer token (answer_tokens = the end), else None
    reason: str
    answer_tokens: int
    checked_tokens: int

    @property
    def inconsistent(self) -> bool:
        return self.status == INCONSISTENT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, o: Mapping[str, Any]) -> Verdict:
        status = o["status"]
        if status not in STATUSES:
            raise ValueError(f"verdict status {status!r}")
        pos = o["position"]
        return cls(
            str(status),
            None if pos is None else int(pos),
            str(o["reason"]),
            int(o["answer_tokens"]),
            int(o["checked_tokens"]),
        )


def token_problem(d: Decoding, s: TokenScore, tol: Tolerance) -> str | None:
    """Why this claimed token could not have been produced under `d`, or None."""
    if d.greedy:
        gap = s.top_logit - s.logit
        if gap > tol.logit_margin:
            return (
                f"token {s.token} is not the argmax {s.top_token}: its logit is {gap:.3f} below "
                f"(margin {tol.logit_margin})"
            )
        return None
    if d.top_k > 0 and s.kth_logit is not None and s.logit < s.kth_logit - tol.logit_margin:
        return f"token {s.token} is outside the top-{d.top_k} (rank {s.rank})"
    if float(d.top_p) < 1.0 and s.mass_above > float(d.top_p) + tol.mass_margin:
        return (
            f"token {s.token} is outside the top-p {d.top_p} nucleus: "
            f"{s.mass_above:.3f} of the mass is better"
        )
    if s.draw is not None and s.cum_lo is not None and s.cum_hi is not None:
        intervals = [(s.cum_lo, s.cum_hi)]
        if s.cum_lo2 is not None and s.cum_hi2 is not None:
            intervals.append((s.cum_lo2, s.cum_hi2))
        if not any(_draw_within(d, s.draw, lo, hi, tol) for lo, hi in intervals):
            return (
                f"token {s.token} is not the seeded draw: u={s.draw:.4f} falls outside "
                + " and ".join(f"[{lo:.4f}, {hi:.4f}]" for lo, hi in intervals)
            )
    return None


def _draw_within(d: Decoding, u: float, lo: float, hi: float, tol: Tolerance) -> bool:
    """Every logit may be off by logit_margin: the mass of a set of tokens then moves by at most a
    factor a² = e^(2·margin/T) against the rest, so the interval widens accordingly."""
    a2 = math.exp(min(2 * tol.logit_margin / max(float(d.temperature), 1e-6), 60.0))
    lo_min = lo / (lo + (1 - lo) * a2)
    hi_max = hi * a2 / (hi * a2 + (1 - hi))
    return lo_min - tol.mass_margin <= u <= hi_max + tol.mass_margin


def verdict(
    d: Decoding,
    finish_reason: str,
    output_tokens: int,
    answer: Sequence[TokenScore],
    ends: Mapping[str, Sequence[TokenScore]],
    tol: Tolerance = Tolerance(),
    lossless_tokens: int | None = None,
) -> Verdict:
    """The verdict over a claimed answer. `answer` scores each answer token; `ends` scores each
    way the answer could have stopped after its last token ("eos:<id>" → the end-of-sequence
    token, "stop:<i>" → the tokens of stop sequence i), as the verifier built them.

    `lossless_tokens`: the answer's text holds a replacement character (the model emitted bytes
    that are not UTF-8), so its tokens cannot be recovered from the text past that point; only the
    first `lossless_tokens` are checked and the rest is `unverifiable`, never passed."""
    n = len(answer)

    def bad(pos: int, reason: str) -> Verdict:
        return Verdict(INCONSISTENT, pos, reason, n, min(pos + 1, n))

    if lossless_tokens is not None:
        for i, s in enumerate(answer[:lossless_tokens]):
            problem = token_problem(d, s, tol)
            if problem is not None:
                return bad(i, problem)
        return Verdict(
            UNVERIFIABLE,
            None,
            f"the answer's text is lossy (not UTF-8) after token {lossless_tokens}: the first "
            f"{lossless_tokens} tokens are consistent, the rest cannot be checked from text",
            n,
            min(lossless_tokens, n),
        )

    if finish_reason not in ("stop", "length"):
        return bad(n, f"finish reason {finish_reason!r} is neither 'stop' nor 'length'")
    if n > d.max_tokens:
        return bad(d.max_tokens, f"the answer has {n} tokens; max_tokens is {d.max_tokens}")
    for i, s in enumerate(answer):
        problem = token_problem(d, s, tol)
        if problem is not None:
            return bad(i, problem)
    if finish_reason == "length":
        if n != d.max_tokens or output_tokens != n:
            return bad(
                n,
                f"claims the length limit with {n} answer tokens (receipt {output_tokens}); "
                f"max_tokens is {d.max_tokens}: truncated",
            )
    else:
        ok_ends = [
            name
            for name, scores in ends.items()
            if all(token_problem(d, s, tol) is None for s in scores)
            and (output_tokens == n if name.startswith("eos:") else output_tokens >= n)
        ]
        if not ok_ends:
            return bad(
                n,
                f"the answer stops after {n} tokens (receipt {output_tokens}) where the model "
                "would not stop: truncated or cut",
            )
    if not d.greedy and not d.filtered and not d.seeded:
        return Verdict(
            UNVERIFIABLE,
            None,
            "unfiltered, unseeded sampling admits every token; only the length was checked",
            n,
            n,
        )
    return Verdict(CONSISTENT, None, "every token is consistent with the model", n, n)


_PUBLIC_REASONS = (
    ("is not the argmax", "a claimed token is not the model's argmax (greedy)"),
    ("outside the top-p", "a claimed token is outside the top-p nucleus"),
    ("outside the top-", "a claimed token is outside the allowed top-k"),
    ("seeded draw", "a claimed token is not the seeded sampler's draw"),
    ("truncated", "the answer is truncated or cut where the model would not stop"),
    ("max_tokens is", "the answer is longer than max_tokens"),
    ("finish reason", "the finish reason is neither stop nor length"),
)


def public_reason(v: Verdict) -> str:
    """The verdict's reason without token ids (they are pieces of the answer): what a public log
    may say."""
    for phrase, public in _PUBLIC_REASONS:
        if phrase in v.reason:
            return public
    return "the answer is inconsistent with the model"
