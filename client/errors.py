"""The client package's exception tree.

ClientError
├── NoTrustedWorker     no worker for the model passes the client's own policy
│   └── UnknownModel    no worker (trusted or not) serves the model at all
├── GatewayRefused      the gateway answered with an error status (code and details kept)
└── AnswerRejected      the answer or receipt failed verification (wraps the VerifyError)
"""

from __future__ import annotations

import grpc


class ClientError(Exception):
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


class AnswerRejected(ClientError):
    pass
