"""The proxy's failures as OpenAI error objects: `{"error": {"message", "type", "param", "code"}}`
with the HTTP status an OpenAI client expects. SDK and gateway failures are mapped here, once.

    SDK / gateway failure                      HTTP  type / code
    BadRequest (this proxy's validation)       400   invalid_request_error / per field
    UnknownModel (no worker serves it)         404   invalid_request_error / model_not_found
    NoTrustedWorker (none passes the policy)   503   server_error / no_attested_worker
    AnswerRejected (answer or receipt failed)  502   server_error / answer_rejected
    gateway UNAUTHENTICATED                    401   authentication_error / gateway_token_refused
    gateway PERMISSION_DENIED                  403   permission_error / permission_denied
    gateway FAILED_PRECONDITION (funds)        429   insufficient_quota / insufficient_quota
    gateway RESOURCE_EXHAUSTED, worker limit   400   invalid_request_error / request_too_large
    gateway RESOURCE_EXHAUSTED (otherwise)     429   rate_limit_error / rate_limit_exceeded
    gateway INVALID_ARGUMENT                   400   invalid_request_error / invalid_request
    gateway NOT_FOUND                          404   invalid_request_error / not_found
    gateway UNAVAILABLE                        503   server_error / gateway_unavailable
    gateway DEADLINE_EXCEEDED                  504   server_error / timeout
    gateway (anything else)                    502   server_error / gateway_error
"""

from __future__ import annotations

from typing import Any

import grpc

from ccgw.client.errors import (
    AnswerRejected,
    ClientError,
    GatewayRefused,
    NoTrustedWorker,
    UnknownModel,
)


class ApiError(ClientError):
    """A failure to send to the app as an OpenAI error object."""

    def __init__(
        self, status: int, message: str, type_: str, code: str, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = (
            status,
            message,
            type_,
            code,
            param,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class BadRequest(ApiError):
    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(400, message, "invalid_request_error", code, param)


_GRPC: dict[grpc.StatusCode, tuple[int, str, str, str]] = {
    grpc.StatusCode.UNAUTHENTICATED: (
        401,
        "authentication_error",
        "gateway_token_refused",
        "the gateway refused the proxy's token (check --token-file)",
    ),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error", "permission_denied", ""),
    grpc.StatusCode.FAILED_PRECONDITION: (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "the account's balance does not cover this request (deposit funds)",
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error", "rate_limit_exceeded", ""),
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error", "invalid_request", ""),
    grpc.StatusCode.NOT_FOUND: (404, "invalid_request_error", "not_found", ""),
    grpc.StatusCode.UNAVAILABLE: (
        503,
        "server_error",
        "gateway_unavailable",
        "the gateway or its workers are unavailable",
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "server_error", "timeout", "the job timed out"),
}


def api_error(exc: ClientError) -> ApiError:
    """The one mapping from an SDK failure to what the app sees."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UnknownModel):
        return ApiError(404, str(exc), "invalid_request_error", "model_not_found", "model")
    if isinstance(exc, NoTrustedWorker):
        return ApiError(503, str(exc), "server_error", "no_attested_worker")
    if isinstance(exc, AnswerRejected):
        return ApiError(
            502, f"the answer failed verification: {exc}", "server_error", "answer_rejected"
        )
    if isinstance(exc, GatewayRefused):
        if exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "(TOO_LARGE)" in exc.details:
            return ApiError(400, exc.details, "invalid_request_error", "request_too_large")
        status, type_, code, hint = _GRPC.get(exc.code, (502, "server_error", "gateway_error", ""))
        message = f"{hint}: {exc.details}" if hint else exc.details or exc.code.name
        return ApiError(status, message, type_, code)
    return ApiError(502, str(exc), "server_error", "client_error")
