"""The client package's exception tree: every SDK entry point raises only these (a gateway that
answers with bytes that do not parse is GatewayMisbehaved, never an AttributeError).

ClientError
├── InvalidInput        the caller's own input is unusable (token, prompt/messages, sizes)
├── NoTrustedWorker     no worker for the model passes the client's own policy
│   └── UnknownModel    no worker (trusted or not) serves the model at all
├── GatewayRefused      the gateway answered with an error status (code and details kept)
│   └── WorkerRefused   the worker refused the job; `reason` is its explanation, sealed to this
│                       client and opened here (None when the worker sent none that opens)
├── GatewayMisbehaved   the gateway answered with something that does not parse or breaks the
│                       protocol (a missing or unexpected message)
└── AnswerRejected      the answer, receipt or inclusion proof failed verification
    └── ReleaseLogRejected  the log the releases come from failed: a checkpoint not signed by
                            the log key or inconsistent with one seen before, a release whose
                            inclusion proof does not lead to the checkpoint (ADR 10)
"""

from __future__ import annotations

import grpc


class ClientError(Exception):
    pass


class InvalidInput(ClientError):
    pass


class NoTrustedWorker(ClientError):
    pass


class UnknownModel(NoTrustedWorker):
    pass


class GatewayRefused(ClientError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details
        super().__init__(f"{code.name}: {details}")


class WorkerRefused(GatewayRefused):
    """`details` is what crossed the gateway in clear; `reason` was sealed to this client."""

    def __init__(self, code: grpc.StatusCode, details: str, reason: str | None) -> None:
        super().__init__(code, details)
        self.reason = reason
        if reason is not None:
            self.args = (f"{code.name}: {details} (worker says: {reason})",)


class GatewayMisbehaved(ClientError):
    pass


class AnswerRejected(ClientError):
    pass


class ReleaseLogRejected(AnswerRejected):
    pass
