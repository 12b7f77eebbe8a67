"""The edge of every RPC: request bytes are parsed here (a message that does not parse is
INVALID_ARGUMENT, never an exception inside grpc), and exceptions become statuses in one place
(gateway.errors.status_for). Unknown errors become INTERNAL and are the only ones logged with a
traceback, at a bounded rate (RateLimitedLog)."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from ccgw.gateway.errors import BadRequest, status_for

log = structlog.get_logger("gateway.rpc")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class Unparsable:
    """What the request deserializer hands over for bytes that do not parse."""

    def __repr__(self) -> str:
        return "<unparsable request>"


UNPARSABLE: Any = Unparsable()


class RateLimitedLog:
    """At most `per_interval_max` lines per `interval_s`; the lines dropped are counted and
    reported with the next line allowed."""

    def __init__(
        self,
        per_interval_max: int = 10,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.configure(per_interval_max, interval_s)
        self._clock = clock
        self._window_start = -float("inf")
        self._count = 0
        self.suppressed = 0

    def configure(self, per_interval_max: int, interval_s: float) -> None:
        self._max, self._interval_s = per_interval_max, interval_s

    def allow(self) -> int | None:
        """None to drop this line; otherwise how many lines were dropped before it."""
        now = self._clock()
        if now - self._window_start >= self._interval_s:
            self._window_start, self._count = now, 0
        if self._count >= self._max:
            self.suppressed += 1
            return None
        self._count += 1
        dropped, self.suppressed = self.suppressed, 0
        return dropped


internal_errors = RateLimitedLog()


def _parse(cls: type[Message], data: bytes) -> Any:
    try:
        return cls.FromString(data)
    except (DecodeError, RuntimeError, ValueError):
        return UNPARSABLE


def add_service(server: grpc.aio.Server, servicer: object, service: ServiceDescriptor) -> None:
    """Register `servicer` for `service` with request parsing that never raises inside grpc."""
    factories = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    handlers = {}
    for m in service.methods:
        factory = factories[(m.client_streaming, m.server_streaming)]
        handlers[m.name] = factory(
            getattr(servicer, m.name),
            request_deserializer=functools.partial(_parse, GetMessageClass(m.input_type)),
            response_serializer=GetMessageClass(m.output_type).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    code, message = status_for(exc)
    if code == grpc.StatusCode.INTERNAL:
        dropped = internal_errors.allow()
        if dropped is not None:
            log.error("internal_error", exc_info=exc, dropped_since_last=dropped)
    await context.abort(code, message)


def _checked(request: Any) -> Any:
    if request is UNPARSABLE:
        raise BadRequest("request does not parse")
    return request


async def _checked_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for r in requests:
        if r is UNPARSABLE:
            raise BadRequest("stream message does not parse")
        yield r


def unary(
    fn: Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], Awaitable[Resp]]:
    @functools.wraps(fn)
    async def wrapper(
        self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        try:
            return await fn(self, _checked(request), context)
        except Exception as exc:
            await _abort(context, exc)
            raise  # unreachable: abort raises

    return wrapper


def streaming(
    fn: Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext[Req, Resp]], AsyncIterator[Resp]]:
    """For server-streaming and bidi handlers (a request stream is parsed message by message)."""

    @functools.wraps(fn)
    async def wrapper(
        self: Any, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> AsyncIterator[Resp]:
        try:
            req: Any = request
            if hasattr(req, "__aiter__"):
                req = _checked_stream(req)
            async for item in fn(self, _checked(req), context):
                yield item
        except Exception as exc:  # noqa: BLE001 - mapped (and logged if unknown) in one place
            await _abort(context, exc)

    return wrapper
