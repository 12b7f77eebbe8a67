"""The aiohttp application: /v1/chat/completions, /v1/completions (both with SSE streaming),
/v1/embeddings, /v1/models and /v1/ccgw/report, each call one confidential job through the SDK.

Streaming: the HTTP status is decided only after the SDK has verified a worker and the first
authenticated text (or the verified end) arrived, so a refusal before that is a proper error
response; a failure after it ends the stream with an `error` event and no `[DONE]`. The receipt
and its verdict come in the last chunk's `ccgw` field (headers are gone by then).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from ccgw.client.errors import ClientError
from ccgw.client.proxy import render
from ccgw.client.proxy.config import ProxyConfig
from ccgw.client.proxy.errors import ApiError, BadRequest, api_error
from ccgw.client.proxy.requests import (
    GenerationJob,
    parse_chat,
    parse_completion,
    parse_embeddings,
    parse_json,
)
from ccgw.client.sdk import Answer, Client, TextEvent
from ccgw.verify import limits as vlimits
from ccgw.verify.errors import LimitError, VerifyError

log = structlog.get_logger("client.proxy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLIENT_KEY = web.AppKey("ccgw_client", Client)
CONFIG_KEY = web.AppKey("ccgw_config", ProxyConfig)
SEM_KEY = web.AppKey("ccgw_sem", asyncio.Semaphore)


def _error_response(err: ApiError) -> web.Response:
    return web.json_response(err.body(), status=err.status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API key check, the concurrency bound, and every failure as an OpenAI error object."""
    config = request.app[CONFIG_KEY]
    if config.api_key is not None:
        got = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(got.encode(), config.api_key.encode()):
            return _error_response(
                ApiError(401, "missing or wrong API key", "authentication_error", "invalid_api_key")
            )
    try:
        async with request.app[SEM_KEY]:
            return await handler(request)
    except ClientError as exc:
        return _error_response(api_error(exc))
    except web.HTTPRequestEntityTooLarge:
        return _error_response(
            ApiError(
                413,
                f"request body exceeds {config.limits.body_bytes_max} bytes",
                "invalid_request_error",
                "request_too_large",
            )
        )
    except LimitError as exc:
        return _error_response(BadRequest(str(exc), code="request_too_large"))
    except VerifyError as exc:
        return _error_response(BadRequest(str(exc)))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error_response(
            ApiError(exc.status, exc.reason, "invalid_request_error", "http_error")
        )
    except Exception as exc:
        log.exception("proxy_internal_error", path=request.path)
        return _error_response(
            ApiError(500, f"internal error ({type(exc).__name__})", "server_error", "internal")
        )


async def _body(request: web.Request) -> dict[str, Any]:
    return parse_json(await request.read())  # read() enforces client_max_size (413)


def _rid(prefix: str) -> str:
    return f"{prefix}-{os.urandom(12).hex()}"


def _sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _run_generation(request: web.Request, job: GenerationJob) -> web.StreamResponse:
    client = request.app[CLIENT_KEY]
    answer = Answer()
    events = client.generate(
        job.model,
        answer,
        prompt=job.prompt,
        messages=job.messages,
        max_new_tokens=job.max_new_tokens,
        sampling=job.sampling,
    )
    rid, created = _rid("chatcmpl" if job.kind == "chat" else "cmpl"), int(time.time())
    if not job.stream:
        async for _ in events:
            pass
        return web.json_response(
            render.completion_body(job, rid, created, answer), headers=render.answer_headers(answer)
        )
    try:
        first: TextEvent | None = await anext(events)
    except StopAsyncIteration:
        first = None
    try:
        return await _stream(request, job, rid, created, answer, first, events)
    finally:
        await events.aclose()  # a client that went away cancels the job


async def _stream(
    request: web.Request,
    job: GenerationJob,
    rid: str,
    created: int,
    answer: Answer,
    first: TextEvent | None,
    events: AsyncIterator[TextEvent],
) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            **render.worker_headers(answer.worker),
        }
    )
    await resp.prepare(request)
    if job.kind == "chat":
        await resp.write(_sse(render.stream_chunk(job, rid, created, None)))
    try:
        if first is not None:
            await resp.write(_sse(render.stream_chunk(job, rid, created, first.text)))
            async for ev in events:
                await resp.write(_sse(render.stream_chunk(job, rid, created, ev.text)))
    except ClientError as exc:
        await resp.write(_sse(api_error(exc).body()))
        await resp.write_eof()
        return resp
    last = render.stream_chunk(job, rid, created, "", answer.finish_reason or "stop")
    last["ccgw"] = render.ccgw_field(answer)
    await resp.write(_sse(last))
    if job.include_usage:
        tail = render.stream_chunk(job, rid, created, "")
        tail["choices"], tail["usage"] = [], render.usage(answer)
        await resp.write(_sse(tail))
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def chat_completions(request: web.Request) -> web.StreamResponse:
    job = parse_chat(await _body(request), request.app[CONFIG_KEY].limits)
    return await _run_generation(request, job)


async def completions(request: web.Request) -> web.StreamResponse:
    job = parse_completion(await _body(request), request.app[CONFIG_KEY].limits)
    return await _run_generation(request, job)


async def embeddings(request: web.Request) -> web.StreamResponse:
    job = parse_embeddings(await _body(request), request.app[CONFIG_KEY].limits)
    answer = await request.app[CLIENT_KEY].embed(job.model, job.texts)
    return web.json_response(
        render.embeddings_body(job, answer), headers=render.answer_headers(answer)
    )


async def models(request: web.Request) -> web.StreamResponse:
    workers = await request.app[CLIENT_KEY].workers("")
    found: dict[str, set[str]] = {}
    for w in workers:
        for name, digest in w.verified.models.items():
            found.setdefault(name, set()).add(digest.hex())
    data = [
        {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "ccgw",
            "ccgw": {
                "attested_workers": sum(name in w.verified.models for w in workers),
                "model_sha256": sorted(digests),
            },
        }
        for name, digests in sorted(found.items())
    ]
    return web.json_response({"object": "list", "data": data})


async def report(request: web.Request) -> web.StreamResponse:
    """What this proxy verified just now: its policy, each attested worker's verified claims (all
    the SDK reports), and each refused worker with the reason."""
    client = request.app[CLIENT_KEY]
    workers = await client.workers("")
    policy = render.jsonable(client.policy)
    return web.json_response(
        {
            "object": "ccgw.report",
            "gateway": request.app[CONFIG_KEY].gateway,
            "checked_at": int(time.time()),
            "simulated_tee_accepted": bool(client.policy.accepts_simulated),
            "policy": policy,
            "releases": render.releases(client.policy),
            "workers": [render.attestation(w) for w in workers],
            "refused": dict(client.rejected),
        }
    )


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise ApiError(404, f"no route {request.path}", "invalid_request_error", "unknown_url")


def build_app(client: Client, config: ProxyConfig) -> web.Application:
    body_max = min(config.limits.body_bytes_max, vlimits.INNER_REQUEST_BYTES_MAX)
    app = web.Application(middlewares=[_errors], client_max_size=body_max)
    app[CLIENT_KEY] = client
    app[CONFIG_KEY] = config
    app[SEM_KEY] = asyncio.Semaphore(config.limits.concurrent_requests_max)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/ccgw/report", report)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


async def serve(client: Client, config: ProxyConfig) -> web.AppRunner:
    """Start serving; returns the runner (`await runner.cleanup()` stops it). The bound port is
    `runner.addresses[0][1]`."""
    if config.api_key is None and config.host not in ("127.0.0.1", "::1", "localhost"):
        raise BadRequest(
            f"refusing to serve on {config.host} without an API key: anyone who reaches it would "
            "spend this account (give --api-key-file, or listen on 127.0.0.1)"
        )
    runner = web.AppRunner(build_app(client, config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.host, config.port).start()
    return runner
