"""Every limit of a worker process, named with its unit, in one frozen config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class WorkerLimits:
    jobs_in_flight_max: int = 8
    request_window_s: int = 300  # a request's issued_at must be within ± this of the worker clock
    replay_cache_entries_max: int = 100_000  # job ids remembered (they expire after the window)
    prompt_tokens_max: int = 1_536
    # A prompt longer than this many characters per allowed input token is refused before it is
    # tokenized (tokenizing is CPU work on the worker: a 1 MiB prompt must cost nothing).
    prompt_chars_per_token_max: int = 16
    open_inline_bytes_max: int = 65_536  # larger sealed requests are decrypted off the event loop
    new_tokens_max: int = 512
    outbox_messages_max: int = 1_024
    heartbeat_interval_s: float = 10.0
    reconnect_backoff_initial_s: float = 0.5
    reconnect_backoff_max_s: float = 30.0
    reconnect_attempts_max: int = 0  # 0 = keep trying
    chunk_tokens_max: int = 16  # coalesce at most this many tokens into one answer chunk
    # Updates of one job queued behind each other while the link is busy go as one message, with
    # at most this many chunks and bytes (the gateway accepts 64 chunks per update).
    update_chunks_max: int = 16
    update_bytes_max: int = 262_144
    drain_timeout_s: float = 60.0  # when draining, jobs in flight get this long to finish
    drain_close_wait_s: float = 5.0  # ... then the gateway this long to close the link


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path
    expected_sha256: bytes | None = None  # refuse to load weights with another digest


@dataclass(frozen=True)
class WorkerConfig:
    gateway: str
    provider_token: str
    models: tuple[ModelSpec, ...]
    region: str = ""
    device: str = "cpu"
    tls_ca_pem: bytes | None = None  # verify the gateway's TLS certificate; None = plaintext (dev)
    limits: WorkerLimits = field(default_factory=WorkerLimits)
