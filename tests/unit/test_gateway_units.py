"""Gateway building blocks without a network: token cache, quotas, rate-limited logging, routing
order, bounded job buffers, and receipts in their one canonical form."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.auth import Authenticator, issue_token
from ccgw.gateway.config import GatewayConfig, GatewayLimits
from ccgw.gateway.errors import QuotaExceeded, Unauthenticated
from ccgw.gateway.quotas import InFlightQuota, RateLimiter
from ccgw.gateway.registry import CLOSED, JobChannel
from ccgw.gateway.routing import rank
from ccgw.gateway.rpc import RateLimitedLog
from ccgw.protos.ccgw.v1 import worker_pb2 as wpb
from ccgw.verify.chunks import AnswerDigest, ChunkOpener, ChunkSealer, open_refusal, seal_refusal
from ccgw.verify.errors import DecryptError, ReceiptError, StreamError
from ccgw.verify.receipts import RECEIPT_VERSION, Receipt, sign_receipt, verify_receipt

KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def md(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_token_verified_once_then_cached_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [time.time()]
    auth = Authenticator((PUB,), "ccgw", cache_s=300, clock=lambda: now[0])
    calls = []
    real = auth._verify
    monkeypatch.setattr(auth, "_verify", lambda t: calls.append(t) or real(t))
    token = issue_token(KEY, sub="client:a", role="client", ttl_s=60)
    for _ in range(5):
        assert auth.authenticate(md(token)).account == "client:a"
    assert len(calls) == 1
    now[0] += 61  # past the token's exp by the cache's clock: verified again, not served cached
    auth.authenticate(md(token))
    assert len(calls) == 2
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate(md(issue_token(KEY, sub="client:a", role="client", ttl_s=-10)))


def test_token_cache_is_bounded_and_never_caches_refusals() -> None:
    auth = Authenticator((PUB,), "ccgw", cache_entries_max=3)
    for i in range(10):
        auth.authenticate(md(issue_token(KEY, sub=f"client:{i}", role="client")))
    assert len(auth._cache) == 3
    other = Ed25519PrivateKey.generate()
    forged = issue_token(other, sub="client:x", role="client")
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="signature"):
            auth.authenticate(md(forged))
    assert len(auth._cache) == 3


def test_rate_limiter_refuses_beyond_burst_and_refills() -> None:
    now = [0.0]
    rl = RateLimiter(rate_per_s=2, burst=3, accounts_max=2, what="job", clock=lambda: now[0])
    for _ in range(3):
        rl.take("a")
    with pytest.raises(QuotaExceeded, match="rate"):
        rl.take("a")
    rl.take("b")  # another account has its own bucket
    now[0] += 0.5  # one token back
    rl.take("a")
    with pytest.raises(QuotaExceeded):
        rl.take("a")
    rl.take("c")  # evicts the least recently used bucket: at most accounts_max kept
    assert len(rl._buckets) == 2


def test_in_flight_quota() -> None:
    q = InFlightQuota(2)
    q.acquire("a")
    q.acquire("a")
    with pytest.raises(QuotaExceeded, match="in flight"):
        q.acquire("a")
    q.release("a")
    q.acquire("a")
    q.release("a")
    q.release("a")
    assert len(q) == 0


def test_rate_limited_log_drops_and_counts() -> None:
    now = [0.0]
    lim = RateLimitedLog(per_interval_max=2, interval_s=10, clock=lambda: now[0])
    assert [lim.allow() for _ in range(5)] == [0, 0, None, None, None]
    now[0] += 10
    assert lim.allow() == 3  # the next line says how many were dropped


def _session(wid: str, *, jobs: int = 0, cap: int = 4, region: str = "", **kw: Any) -> Any:
    s = SimpleNamespace(
        worker_id=wid,
        jobs=dict.fromkeys(range(jobs)),
        capacity=cap,
        region=region,
        closed=False,
        draining=False,
        suspended=False,
        attested_at_s=time.monotonic(),
        verified=SimpleNamespace(models={"m": b""}),
    )
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_routing_filters_and_orders_workers() -> None:
    config = GatewayConfig(limits=GatewayLimits(attestation_max_age_s=60))
    ws = [
        _session("busy", jobs=3),
        _session("full", jobs=4),
        _session("idle"),
        _session("eu", region="eu"),
        _session("draining", draining=True),
        _session("stale", attested_at_s=time.monotonic() - 61),
        _session("closed", closed=True),
        _session("suspended", suspended=True),  # by a reproduced dispute (ADR 14)
        _session("other", verified=SimpleNamespace(models={"x": b""})),
    ]
    assert [s.worker_id for s in rank(ws, "m", config)] == ["idle", "eu", "busy", "full"]
    assert [s.worker_id for s in rank(ws, "m", config, region="eu")][:2] == ["eu", "idle"]


def test_job_channel_sheds_beyond_its_bounds() -> None:
    async def go() -> None:
        ch = JobChannel(job_id=b"j", events_max=2, bytes_max=100)
        m = wpb.WorkerMessage(heartbeat=wpb.Heartbeat())
        assert ch.offer(m, 10)
        assert ch.offer(m, 10)
        assert not ch.offer(m, 10)  # a third event: shed, and the consumer is woken
        assert ch.shed
        assert [ch.events.get_nowait() for _ in range(3)][-1] is CLOSED
        ch2 = JobChannel(job_id=b"j", events_max=10, bytes_max=100)
        assert not ch2.offer(m, 101)

    asyncio.run(go())


def receipt(**kw: Any) -> Receipt:
    base: dict[str, Any] = {f: "00" for f in Receipt.__dataclass_fields__}
    base.update(v=RECEIPT_VERSION, answer_chunks=1, input_tokens=1, output_tokens=1)
    base.update(started_at_ms=1, finished_at_ms=2)
    base.update(top_k=0, max_tokens=1, stop_count=0, input_commit="", output_commit="")
    base.update(kw)
    return Receipt(**base)


def _b64(d: bytes) -> str:
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


def test_receipt_accepted_only_in_canonical_form() -> None:
    pub = KEY.public_key().public_bytes_raw()
    jws = sign_receipt(receipt(), KEY, "k")
    assert verify_receipt(jws, pub, "k") == receipt()
    h, p, s = jws.split(".")
    padded = [f"{h}.{p}.{s}=", f"{h}.{p}==.{s}", f"{h}=.{p}.{s}"]
    for bad in padded:
        with pytest.raises(ReceiptError, match="canonical"):
            verify_receipt(bad, pub, "k")
    # The same signature bytes spelled with stray trailing bits (last char's unused bits set).
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    tweaked = s[:-1] + alphabet[alphabet.index(s[-1]) | 1]
    assert base64.urlsafe_b64decode(tweaked + "==") == base64.urlsafe_b64decode(s + "==")
    with pytest.raises(ReceiptError, match="canonical"):
        verify_receipt(f"{h}.{p}.{tweaked}", pub, "k")
    for junk in (f"{h}.{p}.{s[:10]} {s[10:]}", f"{h}.{p}.{s.replace('-', '+')}"):
        if junk != jws:
            with pytest.raises(ReceiptError):
                verify_receipt(junk, pub, "k")


def test_receipt_header_with_duplicate_members_is_refused() -> None:
    claims = receipt().to_json()
    header = b'{"alg":"none","alg":"EdDSA","kid":"k","typ":"ccgw-receipt+jws"}'
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    jws = f"{signing_input}.{_b64(KEY.sign(signing_input.encode()))}"
    with pytest.raises(ReceiptError, match="repeats"):
        verify_receipt(jws, KEY.public_key().public_bytes_raw(), "k")
    twice = claims[:-1] + b',"v":' + str(RECEIPT_VERSION).encode() + b"}"
    signing_input = f"{_b64(json.dumps({'alg': 'EdDSA', 'kid': 'k', 'typ': 'ccgw-receipt+jws'}).encode())}.{_b64(twice)}"
    jws = f"{signing_input}.{_b64(KEY.sign(signing_input.encode()))}"
    with pytest.raises(ReceiptError, match="repeats"):
        verify_receipt(jws, KEY.public_key().public_bytes_raw(), "k")


def test_answer_digest_covers_the_salt() -> None:
    key, job = os.urandom(32), os.urandom(16)
    salt_a, salt_b = os.urandom(32), os.urandom(32)
    sealer = ChunkSealer(key, salt_a, job)
    idx, ct = sealer.seal(b"hello", True)
    same, other = AnswerDigest(salt_a), AnswerDigest(salt_b)
    for d in (same, other):
        d.update(idx, ct, True)
    assert same.hexdigest() == sealer.digest.hexdigest() != other.hexdigest()
    with pytest.raises(StreamError):
        AnswerDigest(b"short")
    with pytest.raises(DecryptError):
        ChunkOpener(key, salt_b, job).open(idx, ct, True)


def test_refusal_sealed_to_the_client_and_bound_to_its_code() -> None:
    key, job, salt = os.urandom(32), os.urandom(16), os.urandom(32)
    sealed = seal_refusal(key, salt, job, "TOO_LARGE", "prompt is 2000 tokens; the limit is 1536")
    assert b"2000" not in sealed and len(sealed) % 64 == 16  # padded, tag appended
    assert open_refusal(key, salt, job, "TOO_LARGE", sealed).startswith("prompt is 2000")
    for args in ((os.urandom(32), salt, job, "TOO_LARGE"), (key, salt, job, "OVERLOADED")):
        with pytest.raises(DecryptError):
            open_refusal(*args, sealed)
