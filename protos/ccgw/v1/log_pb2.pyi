from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetCheckpointRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    def __init__(self, checkpoint: _Optional[str] = ...) -> None: ...

class GetInclusionProofRequest(_message.Message):
    __slots__ = ("job_id", "tree_size")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    job_id: bytes
    tree_size: int
    def __init__(self, job_id: _Optional[bytes] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetEntryProofRequest(_message.Message):
    __slots__ = ("index", "tree_size")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetInclusionProofResponse(_message.Message):
    __slots__ = ("leaf_index", "tree_size", "hashes", "entry")
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    leaf_index: int
    tree_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    entry: LogEntry
    def __init__(self, leaf_index: _Optional[int] = ..., tree_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ..., entry: _Optional[_Union[LogEntry, _Mapping]] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("first", "second")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    first: int
    second: int
    def __init__(self, first: _Optional[int] = ..., second: _Optional[int] = ...) -> None: ...

class GetConsistencyProofResponse(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("index", "kind", "body")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    index: int
    kind: str
    body: bytes
    def __init__(self, index: _Optional[int] = ..., kind: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class GetEntriesRequest(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class GetEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ...) -> None: ...

class GetEvidenceRequest(_message.Message):
    __slots__ = ("evidence_sha256",)
    EVIDENCE_SHA256_FIELD_NUMBER: _ClassVar[int]
    evidence_sha256: str
    def __init__(self, evidence_sha256: _Optional[str] = ...) -> None: ...

class GetEvidenceResponse(_message.Message):
    __slots__ = ("bundle",)
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    bundle: bytes
    def __init__(self, bundle: _Optional[bytes] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("seq", "transfer_id", "kind", "job_id", "account", "amount_micro", "log_index")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TRANSFER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MICRO_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    seq: int
    transfer_id: str
    kind: str
    job_id: str
    account: str
    amount_micro: int
    log_index: int
    def __init__(self, seq: _Optional[int] = ..., transfer_id: _Optional[str] = ..., kind: _Optional[str] = ..., job_id: _Optional[str] = ..., account: _Optional[str] = ..., amount_micro: _Optional[int] = ..., log_index: _Optional[int] = ...) -> None: ...

class GetLedgerRequest(_message.Message):
    __slots__ = ("after_seq", "limit")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    limit: int
    def __init__(self, after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class GetLedgerResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ...) -> None: ...

class GetAccountsRequest(_message.Message):
    __slots__ = ("after", "limit")
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after: str
    limit: int
    def __init__(self, after: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class AccountBalance(_message.Message):
    __slots__ = ("account", "balance_micro")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_MICRO_FIELD_NUMBER: _ClassVar[int]
    account: str
    balance_micro: int
    def __init__(self, account: _Optional[str] = ..., balance_micro: _Optional[int] = ...) -> None: ...

class GetAccountsResponse(_message.Message):
    __slots__ = ("log_size", "accounts")
    LOG_SIZE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    log_size: int
    accounts: _containers.RepeatedCompositeFieldContainer[AccountBalance]
    def __init__(self, log_size: _Optional[int] = ..., accounts: _Optional[_Iterable[_Union[AccountBalance, _Mapping]]] = ...) -> None: ...

class GetAccountKeysRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: str
    def __init__(self, account: _Optional[str] = ...) -> None: ...

class GetAccountKeysResponse(_message.Message):
    __slots__ = ("log_indexes",)
    LOG_INDEXES_FIELD_NUMBER: _ClassVar[int]
    log_indexes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, log_indexes: _Optional[_Iterable[int]] = ...) -> None: ...

class GetReleasesRequest(_message.Message):
    __slots__ = ("tree_size", "start_index")
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    START_INDEX_FIELD_NUMBER: _ClassVar[int]
    tree_size: int
    start_index: int
    def __init__(self, tree_size: _Optional[int] = ..., start_index: _Optional[int] = ...) -> None: ...

class ProvenEntry(_message.Message):
    __slots__ = ("entry", "hashes")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    entry: LogEntry
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, entry: _Optional[_Union[LogEntry, _Mapping]] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetReleasesResponse(_message.Message):
    __slots__ = ("tree_size", "entries", "more", "checkpoint")
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    tree_size: int
    entries: _containers.RepeatedCompositeFieldContainer[ProvenEntry]
    more: bool
    checkpoint: str
    def __init__(self, tree_size: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[ProvenEntry, _Mapping]]] = ..., more: _Optional[bool] = ..., checkpoint: _Optional[str] = ...) -> None: ...
