from ccgw.protos.ccgw.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FailureCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_CODE_UNSPECIFIED: _ClassVar[FailureCode]
    INVALID_REQUEST: _ClassVar[FailureCode]
    TOO_LARGE: _ClassVar[FailureCode]
    REPLAYED: _ClassVar[FailureCode]
    OVERLOADED: _ClassVar[FailureCode]
    ENGINE_ERROR: _ClassVar[FailureCode]
    CANCELLED: _ClassVar[FailureCode]
FAILURE_CODE_UNSPECIFIED: FailureCode
INVALID_REQUEST: FailureCode
TOO_LARGE: FailureCode
REPLAYED: FailureCode
OVERLOADED: FailureCode
ENGINE_ERROR: FailureCode
CANCELLED: FailureCode

class WorkerHello(_message.Message):
    __slots__ = ("models", "software_version", "max_concurrent_jobs", "region")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_JOBS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    software_version: str
    max_concurrent_jobs: int
    region: str
    def __init__(self, models: _Optional[_Iterable[str]] = ..., software_version: _Optional[str] = ..., max_concurrent_jobs: _Optional[int] = ..., region: _Optional[str] = ...) -> None: ...

class GpuTelemetry(_message.Message):
    __slots__ = ("index", "utilization_pct", "memory_used_bytes", "memory_total_bytes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_PCT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    index: int
    utilization_pct: int
    memory_used_bytes: int
    memory_total_bytes: int
    def __init__(self, index: _Optional[int] = ..., utilization_pct: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("in_flight", "capacity", "gpu_present", "device", "gpus")
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    GPU_PRESENT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    in_flight: int
    capacity: int
    gpu_present: bool
    device: str
    gpus: _containers.RepeatedCompositeFieldContainer[GpuTelemetry]
    def __init__(self, in_flight: _Optional[int] = ..., capacity: _Optional[int] = ..., gpu_present: _Optional[bool] = ..., device: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[GpuTelemetry, _Mapping]]] = ...) -> None: ...

class JobStarted(_message.Message):
    __slots__ = ("job_id", "answer_salt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_SALT_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    answer_salt: bytes
    def __init__(self, job_id: _Optional[bytes] = ..., answer_salt: _Optional[bytes] = ...) -> None: ...

class SealedChunk(_message.Message):
    __slots__ = ("index", "ciphertext", "final")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    index: int
    ciphertext: bytes
    final: bool
    def __init__(self, index: _Optional[int] = ..., ciphertext: _Optional[bytes] = ..., final: _Optional[bool] = ...) -> None: ...

class JobChunk(_message.Message):
    __slots__ = ("job_id", "chunk")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    chunk: SealedChunk
    def __init__(self, job_id: _Optional[bytes] = ..., chunk: _Optional[_Union[SealedChunk, _Mapping]] = ...) -> None: ...

class JobReceipt(_message.Message):
    __slots__ = ("job_id", "jws")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JWS_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    jws: str
    def __init__(self, job_id: _Optional[bytes] = ..., jws: _Optional[str] = ...) -> None: ...

class JobUpdate(_message.Message):
    __slots__ = ("job_id", "answer_salt", "chunks", "receipt_jws", "log_index")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWER_SALT_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_JWS_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    answer_salt: bytes
    chunks: _containers.RepeatedCompositeFieldContainer[SealedChunk]
    receipt_jws: str
    log_index: int
    def __init__(self, job_id: _Optional[bytes] = ..., answer_salt: _Optional[bytes] = ..., chunks: _Optional[_Iterable[_Union[SealedChunk, _Mapping]]] = ..., receipt_jws: _Optional[str] = ..., log_index: _Optional[int] = ...) -> None: ...

class JobFailed(_message.Message):
    __slots__ = ("job_id", "code", "message", "detail_salt", "sealed_detail")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_SALT_FIELD_NUMBER: _ClassVar[int]
    SEALED_DETAIL_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    code: FailureCode
    message: str
    detail_salt: bytes
    sealed_detail: bytes
    def __init__(self, job_id: _Optional[bytes] = ..., code: _Optional[_Union[FailureCode, str]] = ..., message: _Optional[str] = ..., detail_salt: _Optional[bytes] = ..., sealed_detail: _Optional[bytes] = ...) -> None: ...

class WorkerDraining(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerMessage(_message.Message):
    __slots__ = ("hello", "evidence", "started", "chunk", "receipt", "failed", "heartbeat", "draining", "update")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    hello: WorkerHello
    evidence: _common_pb2.EvidenceBundle
    started: JobStarted
    chunk: JobChunk
    receipt: JobReceipt
    failed: JobFailed
    heartbeat: Heartbeat
    draining: WorkerDraining
    update: JobUpdate
    def __init__(self, hello: _Optional[_Union[WorkerHello, _Mapping]] = ..., evidence: _Optional[_Union[_common_pb2.EvidenceBundle, _Mapping]] = ..., started: _Optional[_Union[JobStarted, _Mapping]] = ..., chunk: _Optional[_Union[JobChunk, _Mapping]] = ..., receipt: _Optional[_Union[JobReceipt, _Mapping]] = ..., failed: _Optional[_Union[JobFailed, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., draining: _Optional[_Union[WorkerDraining, _Mapping]] = ..., update: _Optional[_Union[JobUpdate, _Mapping]] = ...) -> None: ...

class Challenge(_message.Message):
    __slots__ = ("nonce",)
    NONCE_FIELD_NUMBER: _ClassVar[int]
    nonce: bytes
    def __init__(self, nonce: _Optional[bytes] = ...) -> None: ...

class Admitted(_message.Message):
    __slots__ = ("worker_id", "evidence_sha256")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_SHA256_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    evidence_sha256: str
    def __init__(self, worker_id: _Optional[str] = ..., evidence_sha256: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: _common_pb2.SealedRequest
    def __init__(self, request: _Optional[_Union[_common_pb2.SealedRequest, _Mapping]] = ...) -> None: ...

class CancelJob(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    def __init__(self, job_id: _Optional[bytes] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GatewayMessage(_message.Message):
    __slots__ = ("challenge", "admitted", "job", "cancel", "drain")
    CHALLENGE_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    challenge: Challenge
    admitted: Admitted
    job: Job
    cancel: CancelJob
    drain: Drain
    def __init__(self, challenge: _Optional[_Union[Challenge, _Mapping]] = ..., admitted: _Optional[_Union[Admitted, _Mapping]] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., cancel: _Optional[_Union[CancelJob, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ...) -> None: ...
