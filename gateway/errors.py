"""The gateway's exception tree and the ONE table that maps errors to gRPC status codes.

    GatewayError
    ├── Unauthenticated        missing/invalid token                      UNAUTHENTICATED
    ├── PermissionDenied       valid token, wrong role or account         PERMISSION_DENIED
    ├── BadRequest             malformed input                            INVALID_ARGUMENT
    ├── TooLarge               a size/token limit                         RESOURCE_EXHAUSTED
    ├── Overloaded             no capacity, queue full                    RESOURCE_EXHAUSTED
    │   └── QuotaExceeded      an account's rate or concurrency quota     RESOURCE_EXHAUSTED
    ├── NotFound               unknown worker/job/receipt                 NOT_FOUND
    ├── Conflict               job id already in flight or settled        ALREADY_EXISTS
    ├── InsufficientFunds      balance below the job's maximum cost       FAILED_PRECONDITION
    ├── WorkerUnavailable      worker gone or not admitted                UNAVAILABLE
    ├── WorkerRejected         worker refused the job (its code carried)  per FailureCode
    ├── DeadlineExceeded       a job or challenge ran out of time         DEADLINE_EXCEEDED
    ├── DisputeRefused         dispute evidence fails or is not reproduced FAILED_PRECONDITION
    └── ReceiptRejected        a worker receipt that fails verification   DATA_LOSS

verify.errors.VerifyError reaching a handler is the caller's bad input (INVALID_ARGUMENT, or
RESOURCE_EXHAUSTED for LimitError). Anything else is INTERNAL with no detail: it is the only kind
logged with a traceback, and at most `error_logs_per_interval_max` times per interval (RateLimitedLog),
so nobody can flood the logs by sending what the gateway expects to refuse.
"""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError

from ccgw.verify import errors as verrors


class GatewayError(Exception):
    pass


class Unauthenticated(GatewayError):
    pass


class PermissionDenied(GatewayError):
    pass


class BadRequest(GatewayError):
    pass


class TooLarge(GatewayError):
    pass


class Overloaded(GatewayError):
    pass


class QuotaExceeded(Overloaded):
    pass


class NotFound(GatewayError):
    pass


class Conflict(GatewayError):
    pass


class InsufficientFunds(GatewayError):
    pass


class WorkerUnavailable(GatewayError):
    pass


class DeadlineExceeded(GatewayError):
    pass


class DisputeRefused(GatewayError):
    """A dispute whose evidence does not hold or whose verdict the gateway does not reproduce."""


class ReceiptRejected(GatewayError):
    pass


class WorkerRejected(GatewayError):
    def __init__(self, failure_code: str, message: str) -> None:
        self.failure_code = failure_code
        super().__init__(message)


_STATUS: dict[type[Exception], grpc.StatusCode] = {
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Conflict: grpc.StatusCode.ALREADY_EXISTS,
    InsufficientFunds: grpc.StatusCode.FAILED_PRECONDITION,
    WorkerUnavailable: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    ReceiptRejected: grpc.StatusCode.DATA_LOSS,
    DisputeRefused: grpc.StatusCode.FAILED_PRECONDITION,
    verrors.LimitError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    verrors.VerifyError: grpc.StatusCode.INVALID_ARGUMENT,
    DecodeError: grpc.StatusCode.INVALID_ARGUMENT,
}

_WORKER_FAILURES: dict[str, grpc.StatusCode] = {
    "INVALID_REQUEST": grpc.StatusCode.INVALID_ARGUMENT,
    "TOO_LARGE": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "REPLAYED": grpc.StatusCode.ALREADY_EXISTS,
    "OVERLOADED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "ENGINE_ERROR": grpc.StatusCode.UNAVAILABLE,
    "CANCELLED": grpc.StatusCode.CANCELLED,
}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """(code, message safe to send) for an exception; unknown errors leak no detail."""
    if isinstance(exc, WorkerRejected):
        code = _WORKER_FAILURES.get(exc.failure_code, grpc.StatusCode.UNAVAILABLE)
        return code, f"worker refused the job ({exc.failure_code}): {exc}"
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls], str(exc) or cls.__name__
    return grpc.StatusCode.INTERNAL, "internal error"
