from ccgw.protos.ccgw.v1 import collateral_pb2 as _collateral_pb2
from ccgw.protos.ccgw.v1 import common_pb2 as _common_pb2
from ccgw.protos.ccgw.v1 import worker_pb2 as _worker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    READY: _ClassVar[WorkerState]
    DRAINING: _ClassVar[WorkerState]
WORKER_STATE_UNSPECIFIED: WorkerState
READY: WorkerState
DRAINING: WorkerState

class ListWorkersRequest(_message.Message):
    __slots__ = ("model", "region")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    model: str
    region: str
    def __init__(self, model: _Optional[str] = ..., region: _Optional[str] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "models", "evidence", "evidence_sha256", "in_flight", "capacity", "region", "admitted_at_ms", "state", "attested_at_ms", "input_per_1k_micro", "output_per_1k_micro")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_SHA256_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTESTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    INPUT_PER_1K_MICRO_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PER_1K_MICRO_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    models: _containers.RepeatedScalarFieldContainer[str]
    evidence: _common_pb2.EvidenceBundle
    evidence_sha256: str
    in_flight: int
    capacity: int
    region: str
    admitted_at_ms: int
    state: WorkerState
    attested_at_ms: int
    input_per_1k_micro: int
    output_per_1k_micro: int
    def __init__(self, worker_id: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., evidence: _Optional[_Union[_common_pb2.EvidenceBundle, _Mapping]] = ..., evidence_sha256: _Optional[str] = ..., in_flight: _Optional[int] = ..., capacity: _Optional[int] = ..., region: _Optional[str] = ..., admitted_at_ms: _Optional[int] = ..., state: _Optional[_Union[WorkerState, str]] = ..., attested_at_ms: _Optional[int] = ..., input_per_1k_micro: _Optional[int] = ..., output_per_1k_micro: _Optional[int] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers", "collateral")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    COLLATERAL_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    collateral: _collateral_pb2.Collateral
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ..., collateral: _Optional[_Union[_collateral_pb2.Collateral, _Mapping]] = ...) -> None: ...

class ChallengeWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "nonce")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    nonce: bytes
    def __init__(self, worker_id: _Optional[str] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class ChallengeWorkerResponse(_message.Message):
    __slots__ = ("evidence", "collateral")
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    COLLATERAL_FIELD_NUMBER: _ClassVar[int]
    evidence: _common_pb2.EvidenceBundle
    collateral: _collateral_pb2.Collateral
    def __init__(self, evidence: _Optional[_Union[_common_pb2.EvidenceBundle, _Mapping]] = ..., collateral: _Optional[_Union[_collateral_pb2.Collateral, _Mapping]] = ...) -> None: ...

class ReceiptEnvelope(_message.Message):
    __slots__ = ("jws", "log_index")
    JWS_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    jws: str
    log_index: int
    def __init__(self, jws: _Optional[str] = ..., log_index: _Optional[int] = ...) -> None: ...

class InferEvent(_message.Message):
    __slots__ = ("started", "chunk", "receipt", "failed", "update")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    started: _worker_pb2.JobStarted
    chunk: _worker_pb2.SealedChunk
    receipt: ReceiptEnvelope
    failed: _worker_pb2.JobFailed
    update: _worker_pb2.JobUpdate
    def __init__(self, started: _Optional[_Union[_worker_pb2.JobStarted, _Mapping]] = ..., chunk: _Optional[_Union[_worker_pb2.SealedChunk, _Mapping]] = ..., receipt: _Optional[_Union[ReceiptEnvelope, _Mapping]] = ..., failed: _Optional[_Union[_worker_pb2.JobFailed, _Mapping]] = ..., update: _Optional[_Union[_worker_pb2.JobUpdate, _Mapping]] = ...) -> None: ...

class GetReceiptRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    def __init__(self, job_id: _Optional[bytes] = ...) -> None: ...

class GetReceiptResponse(_message.Message):
    __slots__ = ("receipt",)
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    receipt: ReceiptEnvelope
    def __init__(self, receipt: _Optional[_Union[ReceiptEnvelope, _Mapping]] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetBalanceResponse(_message.Message):
    __slots__ = ("account", "balance_micro", "held_micro")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_MICRO_FIELD_NUMBER: _ClassVar[int]
    HELD_MICRO_FIELD_NUMBER: _ClassVar[int]
    account: str
    balance_micro: int
    held_micro: int
    def __init__(self, account: _Optional[str] = ..., balance_micro: _Optional[int] = ..., held_micro: _Optional[int] = ...) -> None: ...

class DrainWorkerRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class DrainWorkerResponse(_message.Message):
    __slots__ = ("in_flight",)
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    in_flight: int
    def __init__(self, in_flight: _Optional[int] = ...) -> None: ...

class FileDisputeRequest(_message.Message):
    __slots__ = ("evidence",)
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    evidence: bytes
    def __init__(self, evidence: _Optional[bytes] = ...) -> None: ...

class FileDisputeResponse(_message.Message):
    __slots__ = ("log_index", "outcome", "position", "reason", "worker_id", "already_logged")
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ALREADY_LOGGED_FIELD_NUMBER: _ClassVar[int]
    log_index: int
    outcome: str
    position: int
    reason: str
    worker_id: str
    already_logged: bool
    def __init__(self, log_index: _Optional[int] = ..., outcome: _Optional[str] = ..., position: _Optional[int] = ..., reason: _Optional[str] = ..., worker_id: _Optional[str] = ..., already_logged: _Optional[bool] = ...) -> None: ...

class PublishReleaseRequest(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: bytes
    def __init__(self, document: _Optional[bytes] = ...) -> None: ...

class PublishReleaseResponse(_message.Message):
    __slots__ = ("log_index", "already_logged", "kind", "digest")
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    ALREADY_LOGGED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    log_index: int
    already_logged: bool
    kind: str
    digest: str
    def __init__(self, log_index: _Optional[int] = ..., already_logged: _Optional[bool] = ..., kind: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...
