"""Sealing the inner request to a worker's attested HPKE key (RFC 9180, single-shot base mode).

Wire rules:
- The inner request is framed (4-byte length) and zero-padded to a bucket of
  limits.PAD_BUCKETS_BYTES, so the ciphertext length reveals only the bucket.
- HPKE `info` = encode("ccgw/v1/request", SHA-256(routing header bytes)). The header is therefore
  authenticated by the key schedule: a swapped or edited header makes decryption fail. (The
  `cryptography` single-shot API has no separate AAD argument; binding through `info` gives the
  same guarantee. See docs/adr/0002-hpke-header-binding.md.)
- Sizes are checked before any decryption: the ciphertext must be exactly
  enc + padded_size + 16 bytes for the suite named in the header.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from google.protobuf.message import DecodeError

from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import limits
from ccgw.verify.encoding import fields
from ccgw.verify.errors import DecryptError, LimitError, MalformedError

PROTOCOL_VERSION = 1
AEAD_TAG_BYTES = 16

_ENC_BYTES = {
    pb.X25519_SHA256_CHACHA20POLY1305: 32,
    pb.MLKEM768X25519_SHA256_CHACHA20POLY1305: 1088 + 32,
}
_SUITES = {
    pb.X25519_SHA256_CHACHA20POLY1305: hpke.Suite(
        hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
    ),
    pb.MLKEM768X25519_SHA256_CHACHA20POLY1305: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
    ),
}

HpkePrivateKey = x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey


def pad(data: bytes, buckets: tuple[int, ...] = limits.PAD_BUCKETS_BYTES) -> bytes:
    framed_len = 4 + len(data)
    for size in buckets:
        if framed_len <= size:
            return struct.pack(">I", len(data)) + data + bytes(size - framed_len)
    raise LimitError(f"inner request of {len(data)} bytes exceeds the largest bucket {buckets[-1]}")


def unpad(padded: bytes) -> bytes:
    if len(padded) < 4:
        raise MalformedError("padded payload shorter than its length prefix")
    (n,) = struct.unpack(">I", padded[:4])
    if n > len(padded) - 4:
        raise MalformedError("padded payload length prefix exceeds payload")
    if any(padded[4 + n :]):
        raise MalformedError("padding is not zero")
    return padded[4 : 4 + n]


def request_info(header_bytes: bytes) -> bytes:
    return fields("ccgw/v1/request", hashlib.sha256(header_bytes).digest())


def request_sha256(sealed: pb.SealedRequest) -> str:
    """Digest (hex) of a sealed request, header included: what the receipt binds."""
    return hashlib.sha256(
        fields("ccgw/v1/sealed-request", sealed.header, sealed.ciphertext)
    ).hexdigest()


def public_key_for(
    suite: int, keys: pb.WorkerKeys
) -> x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey:
    if suite == pb.X25519_SHA256_CHACHA20POLY1305:
        return x25519.X25519PublicKey.from_public_bytes(keys.hpke_x25519)
    if suite == pb.MLKEM768X25519_SHA256_CHACHA20POLY1305:
        raw = keys.hpke_mlkem768_x25519
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(raw[:1184]),
            x25519.X25519PublicKey.from_public_bytes(raw[1184:]),
        )
    raise MalformedError(f"unsupported HPKE suite {suite}")


def seal_request(
    header: pb.RoutingHeader, inner: pb.InnerRequest, keys: pb.WorkerKeys
) -> pb.SealedRequest:
    """Pad and seal `inner` to the worker's key for header.suite; fills header.padded_size."""
    padded = pad(inner.SerializeToString())
    header.version = PROTOCOL_VERSION
    header.padded_size = len(padded)
    header_bytes = header.SerializeToString()
    if len(header_bytes) > limits.ROUTING_HEADER_BYTES_MAX:
        raise LimitError("routing header too large")
    suite = _SUITES.get(header.suite)
    if suite is None:
        raise MalformedError(f"unsupported HPKE suite {header.suite}")
    ct = suite.encrypt(padded, public_key_for(header.suite, keys), info=request_info(header_bytes))
    return pb.SealedRequest(header=header_bytes, ciphertext=ct)


def parse_header(header_bytes: bytes) -> pb.RoutingHeader:
    """Parse and size-check a routing header (what the gateway may read)."""
    if len(header_bytes) > limits.ROUTING_HEADER_BYTES_MAX:
        raise LimitError(
            f"routing header is {len(header_bytes)} bytes; limit {limits.ROUTING_HEADER_BYTES_MAX}"
        )
    header = pb.RoutingHeader()
    try:
        header.ParseFromString(header_bytes)
    except DecodeError as exc:
        raise MalformedError("routing header does not parse") from exc
    if header.version != PROTOCOL_VERSION:
        raise MalformedError(f"routing header version {header.version} is not {PROTOCOL_VERSION}")
    if len(header.job_id) != limits.JOB_ID_BYTES:
        raise MalformedError(f"job id must be {limits.JOB_ID_BYTES} bytes")
    if header.suite not in _SUITES:
        raise MalformedError(f"unsupported HPKE suite {header.suite}")
    if header.padded_size not in limits.PAD_BUCKETS_BYTES:
        raise MalformedError(f"padded size {header.padded_size} is not a bucket size")
    if not header.model or not header.worker_id or not header.key_id:
        raise MalformedError("routing header lacks model, worker id or key id")
    return header


def check_sealed_size(sealed: pb.SealedRequest, header: pb.RoutingHeader) -> None:
    """Exact ciphertext length for the header's suite and bucket; cheap, before decryption."""
    expected = _ENC_BYTES[header.suite] + header.padded_size + AEAD_TAG_BYTES
    if len(sealed.ciphertext) > limits.SEALED_REQUEST_BYTES_MAX:
        raise LimitError(
            f"sealed request is {len(sealed.ciphertext)} bytes; limit "
            f"{limits.SEALED_REQUEST_BYTES_MAX}"
        )
    if len(sealed.ciphertext) != expected:
        raise MalformedError(
            f"ciphertext is {len(sealed.ciphertext)} bytes; header says {expected}"
        )


@dataclass(frozen=True)
class OpenedRequest:
    header: pb.RoutingHeader
    inner: pb.InnerRequest


def open_request(
    sealed: pb.SealedRequest, private_key: HpkePrivateKey, header: pb.RoutingHeader
) -> OpenedRequest:
    """Decrypt a sealed request whose header was parsed and size-checked by the caller."""
    check_sealed_size(sealed, header)
    suite = _SUITES[header.suite]
    try:
        padded = suite.decrypt(sealed.ciphertext, private_key, info=request_info(sealed.header))
    except (InvalidTag, ValueError) as exc:
        raise DecryptError("sealed request does not decrypt under this worker's key") from exc
    inner = pb.InnerRequest()
    try:
        inner.ParseFromString(unpad(padded))
    except DecodeError as exc:
        raise MalformedError("inner request does not parse") from exc
    if len(inner.response_key) != 32 or len(inner.request_nonce) != 32:
        raise MalformedError("response key and request nonce must be 32 bytes each")
    if inner.WhichOneof("input") is None:
        raise MalformedError("inner request has neither prompt nor chat")
    return OpenedRequest(header=header, inner=inner)
