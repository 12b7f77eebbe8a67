"""The one exception tree of the enclave package.

    EnclaveError
    ├── RequestRejected       a job refused before or while running; `code` is a FailureCode name
    │   ├── TooLarge          a size or token limit (maps to RESOURCE_EXHAUSTED / INVALID_ARGUMENT)
    │   ├── Replayed          a job id seen before, or a request outside the time window
    │   └── Overloaded        no slot and the queue is full
    ├── ModelError            a model directory that cannot be loaded (digest, shapes, architecture)
    ├── EngineError           inference failed
    └── EvidenceError         evidence could not be collected (no TEE, CC mode off, configfs race)

Messages never contain a prompt, an answer or key material.
"""

from __future__ import annotations


class EnclaveError(Exception):
    pass


class RequestRejected(EnclaveError):
    code = "INVALID_REQUEST"


class TooLarge(RequestRejected):
    code = "TOO_LARGE"


class Replayed(RequestRejected):
    code = "REPLAYED"


class Overloaded(RequestRejected):
    code = "OVERLOADED"


class ModelError(EnclaveError):
    pass


class EngineError(EnclaveError):
    pass


class EvidenceError(EnclaveError):
    pass
