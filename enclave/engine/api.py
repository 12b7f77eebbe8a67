"""The engine's public value types: what the worker agent sends in and gets back.

Frozen dataclasses with no torch in them, so the agent (and its fake engine in tests) depend on
this contract only. Every limit is named with its unit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineLimits:
    batch_size_max: int = 8  # sequences decoded together (= KV cache slots)
    context_tokens_max: int = 2048  # prompt + answer tokens of one sequence
    queued_jobs_max: int = 64  # jobs waiting for a slot; more is Overloaded
    prompt_tokens_max: int = 1536
    new_tokens_max: int = 512
    stop_sequences_max: int = 8
    stop_sequence_chars_max: int = 64
    prefill_tokens_max: int = 8192  # padded prompt tokens run in one prefill pass

    def check(self) -> None:
        """Raise ValueError for limits that cannot work (a configuration error). A prompt limit
        above the context is harmless: the context check refuses such prompts."""
        bad = sorted(k for k, v in vars(self).items() if not isinstance(v, int) or v < 0)
        if bad or self.batch_size_max < 1 or self.context_tokens_max < 2:
            raise ValueError(
                f"engine limits must be integers, batch_size_max >= 1 and context_tokens_max >= 2"
                f" (bad: {bad})"
            )


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str | None  # exactly one of prompt / messages
    messages: tuple[tuple[str, str], ...] | None  # (role, content)
    max_new_tokens: int
    max_input_tokens: int  # refuse (TooLarge) if the encoded input is longer
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class TextDelta:
    text: str
    tokens: int  # tokens this delta covers


@dataclass(frozen=True)
class Finished:
    input_tokens: int
    output_tokens: int  # sampled answer tokens, the end-of-sequence token not counted
    finish_reason: str  # "stop" | "length"


@dataclass
class EngineStats:
    """Counters for tests and the benchmark (written by the scheduler thread only)."""

    prefills: int = 0  # prefill passes (one may cover several prompts)
    steps: int = 0  # decode steps (one covers every live sequence)
    step_rows: int = 0  # sequences advanced, summed over decode steps
    device_to_host_copies: int = 0  # during decode steps; each one is also a synchronisation
    device_to_host_bytes: int = 0
    host_to_device_bytes: int = 0  # during decode steps (batch changes only)
    slot_moves: int = 0  # sequences moved to keep the live slots contiguous
