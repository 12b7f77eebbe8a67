"""Every operational limit of a gateway process, named with its unit, in one frozen config.

Protocol limits shared by every party (request/chunk/evidence bytes) live in verify.limits; this
holds what one gateway decides for itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ccgw.verify.prices import DEFAULT_SCHEDULE, PriceSchedule


@dataclass(frozen=True)
class GatewayLimits:
    workers_max: int = 1_000  # registry size
    jobs_in_flight_max: int = 1_000  # whole gateway
    jobs_in_flight_per_worker_max: int = 64
    worker_outbox_messages_max: int = 256  # queued messages to one worker
    job_events_max: int = 256  # buffered events of one job not yet sent to its client
    job_buffered_bytes_max: int = 1_048_576  # ... and their bytes; beyond either, the job is shed
    hello_timeout_s: float = 10.0
    evidence_timeout_s: float = 30.0
    job_deadline_s: float = 300.0  # whole job, dispatch to receipt
    first_event_timeout_s: float = 60.0
    heartbeat_timeout_s: float = 60.0
    rechallenge_interval_s: float = 300.0
    client_challenge_timeout_s: float = 30.0
    list_workers_max: int = 256
    log_entries_page_max: int = 256  # GetEntries / GetLedger / GetAccounts page size
    db_pool_connections_max: int = 8  # PostgreSQL connections (and store threads) per gateway
    db_write_batch_max: int = 64  # writes group-committed in one database transaction
    checkpoint_every_entries: int = 64  # sign a checkpoint at most this many entries after the last
    checkpoint_interval_s: float = 10.0  # ... or at most this long after the last
    prompt_tokens_max: int = 32_768
    new_tokens_max: int = 8_192
    shutdown_grace_s: float = 5.0  # NOT_SERVING, then jobs in flight get this long to finish
    # Admission of workers: evidence verification is CPU work, so a flood of registrations waits
    # in a bounded line and is refused (RESOURCE_EXHAUSTED) beyond it.
    admissions_pending_max: int = 16
    workers_per_provider_max: int = 256
    attestation_max_age_s: float = 900.0  # route only to workers verified for a nonce this recently
    # Per-account quotas (RESOURCE_EXHAUSTED beyond them); buckets refill continuously.
    account_jobs_per_s: float = 200.0
    account_jobs_burst: int = 400
    account_jobs_in_flight_max: int = 256
    account_challenges_per_s: float = 2.0  # ChallengeWorker makes a worker collect evidence
    account_challenges_burst: int = 10
    accounts_tracked_max: int = 100_000  # rate-limit buckets kept (least recently used dropped)
    # Verified bearer tokens are cached by their bytes until they expire or for this long.
    token_cache_s: float = 300.0
    token_cache_entries_max: int = 10_000
    # Logging of unexpected errors: at most this many lines per interval (the rest are counted).
    error_logs_per_interval_max: int = 10
    error_log_interval_s: float = 10.0
    metrics_refresh_s: float = 5.0  # log size and ledger totals read from the store this often
    collateral_refresh_s: float = 60.0  # rescan of the collateral directory at most this often
    release_refresh_s: float = 5.0  # releases/revocations re-read from the store this often
    release_entries_page_max: int = 64  # GetReleases page size (entries, each up to 128 KiB) …
    release_page_bytes_max: int = 1_048_576  # … and bytes of entry bodies (at least one entry)


@dataclass(frozen=True)
class GatewayConfig:
    listen: str = "127.0.0.1:0"
    db_path: Path = Path("ccgw-gateway.sqlite3")
    db_dsn: str | None = None  # postgresql://... : shared by several replicas (instead of SQLite)
    db_schema: str = "ccgw"  # PostgreSQL schema holding this gateway's tables
    db_create: bool = False  # create the database if it does not exist (else refuse to start)
    # JWT verification keys (Ed25519 public keys, PEM); tokens are EdDSA only.
    auth_public_keys_pem: tuple[bytes, ...] = ()
    auth_audience: str = "ccgw"
    allow_simulated_tee: bool = False
    simulated_root_pem: bytes | None = None
    policy_path: Path | None = None
    # Release keys (Ed25519 public keys, PEM; ADR 10): workers are admitted only when a release
    # signed by one of them, in this gateway's log and not revoked, allows their software; only
    # documents signed by them may be published. Without one, the gateway needs `policy_path` or
    # the loud `accept_unreleased_software` (start_gateway refuses otherwise).
    release_keys_pem: tuple[bytes, ...] = ()
    accept_unreleased_software: bool = False
    # Vendor collateral (CRLs, Intel TCB info / QE identity) served to clients with the evidence.
    collateral_dir: Path | None = None
    # TLS for the listener (PEM). Without it the gateway listens in plaintext: loopback/dev only.
    tls_cert_pem: bytes | None = None
    tls_key_pem: bytes | None = None
    # Logged (signed with the log key) when the log has no price schedule yet; after that the
    # schedule in the log is the only one (change it with `ccgw prices`).
    initial_prices: PriceSchedule = DEFAULT_SCHEDULE
    # The log's identity: checkpoints are signed by this Ed25519 key under this name and origin.
    log_origin: str = "ccgw.local/log"
    log_key_name: str = "ccgw-log"
    log_key_pem: bytes | None = None  # None: a fresh key per process (demo/tests only)
    reflection: bool = True  # gRPC server reflection (service discovery for grpcurl & co.)
    metrics_listen: str | None = None  # host:port of the Prometheus /metrics endpoint; None = off
    limits: GatewayLimits = GatewayLimits()
