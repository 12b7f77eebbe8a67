"""OpenAI request bodies -> validated jobs. Every field the proxy honours is checked against a
bound; a field that would change the answer in a way the workers cannot honour (tools, n > 1,
logprobs, penalties, images) is refused with a BadRequest naming it, never silently dropped.
Fields that do not change the answer (user, metadata, store, …) are ignored."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccgw.client.proxy.config import ProxyLimits
from ccgw.client.proxy.errors import BadRequest
from ccgw.protos.ccgw.v1 import common_pb2 as cpb

UINT64_MAX = (1 << 64) - 1
TEMPERATURE_MAX = 2.0
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# Fields that would change the answer and that the workers do not implement.
_UNSUPPORTED = (
    "tools",
    "functions",
    "tool_choice",
    "function_call",
    "logit_bias",
    "audio",
    "modalities",
    "prediction",
    "suffix",
)


@dataclass(frozen=True)
class GenerationJob:
    kind: str  # "chat" | "completion"
    model: str
    prompt: str | None
    messages: tuple[tuple[str, str], ...] | None
    max_new_tokens: int
    sampling: cpb.SamplingParams
    stream: bool
    include_usage: bool


@dataclass(frozen=True)
class EmbeddingJob:
    model: str
    texts: tuple[str, ...]
    base64: bool


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_json")
    return body


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model.encode()) > 128:
        raise BadRequest("`model` must be a model name (1–128 bytes)", "model")
    return model


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for key in _UNSUPPORTED:
        if body.get(key) not in (None, [], {}, ""):
            raise BadRequest(f"`{key}` is not supported by this proxy", key, "unsupported")
    for key in ("n", "best_of"):
        if body.get(key) not in (None, 1):
            raise BadRequest(f"`{key}` must be 1", key, "unsupported")
    for key in ("presence_penalty", "frequency_penalty"):
        if body.get(key) not in (None, 0, 0.0):
            raise BadRequest(f"`{key}` is not supported (leave it 0)", key, "unsupported")
    if body.get("logprobs") not in (None, False, 0) or body.get("top_logprobs"):
        raise BadRequest("`logprobs` is not supported", "logprobs", "unsupported")
    if body.get("echo"):
        raise BadRequest("`echo` is not supported", "echo", "unsupported")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise BadRequest(
            "only `response_format` text is supported", "response_format", "unsupported"
        )


def _number(body: Mapping[str, Any], key: str, lo: float, hi: float, default: float) -> float:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise BadRequest(f"`{key}` must be a number in [{lo}, {hi}]", key)
    return float(v)


def _sampling(body: Mapping[str, Any], limits: ProxyLimits) -> cpb.SamplingParams:
    s = cpb.SamplingParams(
        temperature=_number(body, "temperature", 0.0, TEMPERATURE_MAX, 1.0),
        top_p=_number(body, "top_p", 0.0, 1.0, 1.0),
    )
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= UINT64_MAX:
            raise BadRequest("`seed` must be an unsigned 64-bit integer", "seed")
        s.seed = seed
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if (
        not isinstance(stops, list)
        or len(stops) > limits.stop_sequences_max
        or not all(isinstance(x, str) and x for x in stops)
    ):
        raise BadRequest(
            f"`stop` must be a string or up to {limits.stop_sequences_max} non-empty strings",
            "stop",
        )
    s.stop.extend(stops)
    return s


def _max_tokens(body: Mapping[str, Any], default: int, limits: ProxyLimits) -> int:
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limits.max_tokens_max:
        raise BadRequest(f"`{key}` must be an integer in [1, {limits.max_tokens_max}]", key)
    return v


def _stream(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise BadRequest("`stream` must be true or false", "stream")
    opts = body.get("stream_options") or {}
    if not isinstance(opts, dict):
        raise BadRequest("`stream_options` must be an object", "stream_options")
    return bool(stream), bool(opts.get("include_usage", False))


def _content(v: Any, where: str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        out = []
        for part in v:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise BadRequest("only text content parts are supported", where, "unsupported")
            text = part.get("text")
            if not isinstance(text, str):
                raise BadRequest("a text part needs a string `text`", where)
            out.append(text)
        return "".join(out)
    raise BadRequest("`content` must be a string or a list of text parts", where)


def parse_chat(body: Mapping[str, Any], limits: ProxyLimits) -> GenerationJob:
    model = _model(body)
    _refuse_unsupported(body)
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs or len(msgs) > limits.messages_max:
        raise BadRequest(f"`messages` must hold 1–{limits.messages_max} messages", "messages")
    out = []
    for i, m in enumerate(msgs):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise BadRequest(f"{where}: role must be one of {sorted(ROLES)}", f"{where}.role")
        out.append((ROLES[m["role"]], _content(m.get("content"), f"{where}.content")))
    stream, usage = _stream(body)
    return GenerationJob(
        kind="chat",
        model=model,
        prompt=None,
        messages=tuple(out),
        max_new_tokens=_max_tokens(body, limits.max_tokens_default_chat, limits),
        sampling=_sampling(body, limits),
        stream=stream,
        include_usage=usage,
    )


def parse_completion(body: Mapping[str, Any], limits: ProxyLimits) -> GenerationJob:
    model = _model(body)
    _refuse_unsupported(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("`prompt` must be one string", "prompt")
    stream, usage = _stream(body)
    return GenerationJob(
        kind="completion",
        model=model,
        prompt=prompt,
        messages=None,
        max_new_tokens=_max_tokens(body, limits.max_tokens_default_completion, limits),
        sampling=_sampling(body, limits),
        stream=stream,
        include_usage=usage,
    )


def parse_embeddings(body: Mapping[str, Any], limits: ProxyLimits) -> EmbeddingJob:
    model = _model(body)
    inp = body.get("input")
    texts = [inp] if isinstance(inp, str) else inp
    if (
        not isinstance(texts, list)
        or not 1 <= len(texts) <= limits.embedding_texts_max
        or not all(isinstance(t, str) for t in texts)
    ):
        raise BadRequest(
            f"`input` must be a string or 1–{limits.embedding_texts_max} strings "
            "(token arrays are not supported)",
            "input",
        )
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise BadRequest("`encoding_format` must be float or base64", "encoding_format")
    if body.get("dimensions") is not None:
        raise BadRequest("`dimensions` is not supported", "dimensions", "unsupported")
    return EmbeddingJob(model=model, texts=tuple(texts), base64=fmt == "base64")
