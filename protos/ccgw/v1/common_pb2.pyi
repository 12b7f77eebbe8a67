from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Platform(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLATFORM_UNSPECIFIED: _ClassVar[Platform]
    SEV_SNP: _ClassVar[Platform]
    TDX: _ClassVar[Platform]

class HpkeSuite(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HPKE_SUITE_UNSPECIFIED: _ClassVar[HpkeSuite]
    X25519_SHA256_CHACHA20POLY1305: _ClassVar[HpkeSuite]
    MLKEM768X25519_SHA256_CHACHA20POLY1305: _ClassVar[HpkeSuite]
PLATFORM_UNSPECIFIED: Platform
SEV_SNP: Platform
TDX: Platform
HPKE_SUITE_UNSPECIFIED: HpkeSuite
X25519_SHA256_CHACHA20POLY1305: HpkeSuite
MLKEM768X25519_SHA256_CHACHA20POLY1305: HpkeSuite

class WorkerKeys(_message.Message):
    __slots__ = ("hpke_x25519", "hpke_mlkem768_x25519", "receipt_ed25519")
    HPKE_X25519_FIELD_NUMBER: _ClassVar[int]
    HPKE_MLKEM768_X25519_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_ED25519_FIELD_NUMBER: _ClassVar[int]
    hpke_x25519: bytes
    hpke_mlkem768_x25519: bytes
    receipt_ed25519: bytes
    def __init__(self, hpke_x25519: _Optional[bytes] = ..., hpke_mlkem768_x25519: _Optional[bytes] = ..., receipt_ed25519: _Optional[bytes] = ...) -> None: ...

class ModelDigest(_message.Message):
    __slots__ = ("name", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: bytes
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class GpuEvidence(_message.Message):
    __slots__ = ("index", "arch", "report", "cert_chain")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    CERT_CHAIN_FIELD_NUMBER: _ClassVar[int]
    index: int
    arch: str
    report: bytes
    cert_chain: bytes
    def __init__(self, index: _Optional[int] = ..., arch: _Optional[str] = ..., report: _Optional[bytes] = ..., cert_chain: _Optional[bytes] = ...) -> None: ...

class EvidenceBundle(_message.Message):
    __slots__ = ("version", "platform", "cpu_report", "cpu_certs", "gpus", "keys", "nonce", "models", "issued_at_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    CPU_REPORT_FIELD_NUMBER: _ClassVar[int]
    CPU_CERTS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    version: int
    platform: Platform
    cpu_report: bytes
    cpu_certs: _containers.RepeatedScalarFieldContainer[bytes]
    gpus: _containers.RepeatedCompositeFieldContainer[GpuEvidence]
    keys: WorkerKeys
    nonce: bytes
    models: _containers.RepeatedCompositeFieldContainer[ModelDigest]
    issued_at_ms: int
    def __init__(self, version: _Optional[int] = ..., platform: _Optional[_Union[Platform, str]] = ..., cpu_report: _Optional[bytes] = ..., cpu_certs: _Optional[_Iterable[bytes]] = ..., gpus: _Optional[_Iterable[_Union[GpuEvidence, _Mapping]]] = ..., keys: _Optional[_Union[WorkerKeys, _Mapping]] = ..., nonce: _Optional[bytes] = ..., models: _Optional[_Iterable[_Union[ModelDigest, _Mapping]]] = ..., issued_at_ms: _Optional[int] = ...) -> None: ...

class RoutingHeader(_message.Message):
    __slots__ = ("version", "job_id", "model", "worker_id", "key_id", "suite", "max_input_tokens", "max_new_tokens", "padded_size", "issued_at_ms", "account")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_FIELD_NUMBER: _ClassVar[int]
    MAX_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PADDED_SIZE_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    version: int
    job_id: bytes
    model: str
    worker_id: str
    key_id: str
    suite: HpkeSuite
    max_input_tokens: int
    max_new_tokens: int
    padded_size: int
    issued_at_ms: int
    account: str
    def __init__(self, version: _Optional[int] = ..., job_id: _Optional[bytes] = ..., model: _Optional[str] = ..., worker_id: _Optional[str] = ..., key_id: _Optional[str] = ..., suite: _Optional[_Union[HpkeSuite, str]] = ..., max_input_tokens: _Optional[int] = ..., max_new_tokens: _Optional[int] = ..., padded_size: _Optional[int] = ..., issued_at_ms: _Optional[int] = ..., account: _Optional[str] = ...) -> None: ...

class SealedRequest(_message.Message):
    __slots__ = ("header", "ciphertext")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    header: bytes
    ciphertext: bytes
    def __init__(self, header: _Optional[bytes] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("role", "content")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    role: str
    content: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class ChatMessages(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ...) -> None: ...

class EmbedInput(_message.Message):
    __slots__ = ("texts",)
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ...) -> None: ...

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "top_p", "top_k", "seed", "stop")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_p: float
    top_k: int
    seed: int
    stop: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, temperature: _Optional[float] = ..., top_p: _Optional[float] = ..., top_k: _Optional[int] = ..., seed: _Optional[int] = ..., stop: _Optional[_Iterable[str]] = ...) -> None: ...

class InnerRequest(_message.Message):
    __slots__ = ("prompt", "chat", "embed", "sampling", "response_key", "request_nonce")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    EMBED_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_KEY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_NONCE_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    chat: ChatMessages
    embed: EmbedInput
    sampling: SamplingParams
    response_key: bytes
    request_nonce: bytes
    def __init__(self, prompt: _Optional[str] = ..., chat: _Optional[_Union[ChatMessages, _Mapping]] = ..., embed: _Optional[_Union[EmbedInput, _Mapping]] = ..., sampling: _Optional[_Union[SamplingParams, _Mapping]] = ..., response_key: _Optional[bytes] = ..., request_nonce: _Optional[bytes] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ...) -> None: ...

class AnswerPiece(_message.Message):
    __slots__ = ("text", "tokens", "usage", "finish_reason", "embeddings")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    text: str
    tokens: int
    usage: Usage
    finish_reason: str
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    def __init__(self, text: _Optional[str] = ..., tokens: _Optional[int] = ..., usage: _Optional[_Union[Usage, _Mapping]] = ..., finish_reason: _Optional[str] = ..., embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("index", "values")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    index: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, index: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...
