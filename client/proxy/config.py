"""Every bound of the proxy, named with its unit, in one frozen config."""

from __future__ import annotations

from dataclasses import dataclass, field

from ccgw.verify import limits


@dataclass(frozen=True)
class ProxyLimits:
    body_bytes_max: int = limits.INNER_REQUEST_BYTES_MAX  # a request body (JSON); more is 413
    messages_max: int = 256  # chat messages per request
    stop_sequences_max: int = 8
    max_tokens_default_chat: int = 256  # when the request names no max_tokens
    max_tokens_default_completion: int = 16  # OpenAI's default for /v1/completions
    max_tokens_max: int = 32_768  # above this is a bad request (workers enforce their own bound)
    embedding_texts_max: int = 64  # inputs per /v1/embeddings call
    concurrent_requests_max: int = 64  # requests being served at once; more wait


@dataclass(frozen=True)
class ProxyConfig:
    gateway: str  # host:port of the gateway (gRPC)
    host: str = "127.0.0.1"
    port: int = 8080  # 0 = any free port
    api_key: str | None = None  # when set, requests must carry `Authorization: Bearer <api_key>`
    limits: ProxyLimits = field(default_factory=ProxyLimits)
