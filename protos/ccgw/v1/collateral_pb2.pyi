from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Collateral(_message.Message):
    __slots__ = ("crls", "tdx_tcb_info", "tdx_qe_identity", "intel_signing_chain", "ocsp_responses")
    CRLS_FIELD_NUMBER: _ClassVar[int]
    TDX_TCB_INFO_FIELD_NUMBER: _ClassVar[int]
    TDX_QE_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    INTEL_SIGNING_CHAIN_FIELD_NUMBER: _ClassVar[int]
    OCSP_RESPONSES_FIELD_NUMBER: _ClassVar[int]
    crls: _containers.RepeatedScalarFieldContainer[bytes]
    tdx_tcb_info: _containers.RepeatedScalarFieldContainer[bytes]
    tdx_qe_identity: _containers.RepeatedScalarFieldContainer[bytes]
    intel_signing_chain: _containers.RepeatedScalarFieldContainer[bytes]
    ocsp_responses: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, crls: _Optional[_Iterable[bytes]] = ..., tdx_tcb_info: _Optional[_Iterable[bytes]] = ..., tdx_qe_identity: _Optional[_Iterable[bytes]] = ..., intel_signing_chain: _Optional[_Iterable[bytes]] = ..., ocsp_responses: _Optional[_Iterable[bytes]] = ...) -> None: ...
