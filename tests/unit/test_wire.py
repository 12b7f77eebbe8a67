"""Round trips and refusals of the wire formats: padding, HPKE seal/open, chunks, receipts."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import limits
from ccgw.verify.chunks import ChunkOpener, ChunkSealer
from ccgw.verify.errors import DecryptError, MalformedError, ReceiptError, StreamError
from ccgw.verify.hpke import pad, parse_header, seal_request, unpad
from ccgw.verify.receipts import Receipt, sign_receipt, verify_receipt
from tests.support.receipts import make_receipt

KEYS = Keyring()


def header(suite: int = pb.X25519_SHA256_CHACHA20POLY1305) -> pb.RoutingHeader:
    return pb.RoutingHeader(
        job_id=os.urandom(16),
        model="m",
        worker_id="w",
        key_id=KEYS.key_id,
        suite=suite,  # type: ignore[arg-type]
        max_input_tokens=10,
        max_new_tokens=10,
        issued_at_ms=1,
        account="a",
    )


@given(st.binary(max_size=5000))
def test_pad_round_trip_and_bucket_sizes(data: bytes) -> None:
    p = pad(data)
    assert len(p) in limits.PAD_BUCKETS_BYTES
    assert unpad(p) == data


def test_unpad_refuses_nonzero_padding_and_bad_length() -> None:
    p = bytearray(pad(b"abc"))
    p[-1] = 1
    with pytest.raises(MalformedError):
        unpad(bytes(p))
    with pytest.raises(MalformedError):
        unpad(b"\xff\xff\xff\xff")


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=3000), st.sampled_from([1, 2]))
def test_seal_open_round_trip_both_suites(prompt: str, suite: int) -> None:
    h = header(suite)
    inner = pb.InnerRequest(
        prompt=prompt, response_key=os.urandom(32), request_nonce=os.urandom(32)
    )
    sealed = seal_request(h, inner, KEYS.public)
    opened = KEYS.open_request(sealed, parse_header(sealed.header))
    assert opened.inner.prompt == prompt
    # The ciphertext length reveals only the bucket.
    assert h.padded_size in limits.PAD_BUCKETS_BYTES


def test_open_with_another_workers_key_fails() -> None:
    h = header()
    inner = pb.InnerRequest(
        prompt="secret", response_key=os.urandom(32), request_nonce=os.urandom(32)
    )
    sealed = seal_request(h, inner, KEYS.public)
    with pytest.raises(DecryptError):
        Keyring().open_request(sealed, parse_header(sealed.header))


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8))
def test_chunks_round_trip(pieces: list[bytes]) -> None:
    key, salt, job = os.urandom(32), os.urandom(32), os.urandom(16)
    s, o = ChunkSealer(key, salt, job), ChunkOpener(key, salt, job)
    for i, p in enumerate(pieces):
        idx, ct = s.seal(p, i == len(pieces) - 1)
        assert o.open(idx, ct, i == len(pieces) - 1) == p
    assert o.finish() == s.digest.hexdigest()


def test_chunk_from_another_job_or_salt_fails() -> None:
    key, salt, job = os.urandom(32), os.urandom(32), os.urandom(16)
    idx, ct = ChunkSealer(key, salt, job).seal(b"x", True)
    with pytest.raises(DecryptError):
        ChunkOpener(key, salt, os.urandom(16)).open(idx, ct, True)
    with pytest.raises(DecryptError):
        ChunkOpener(key, os.urandom(32), job).open(idx, ct, True)
    with pytest.raises(StreamError):
        ChunkOpener(key, salt, job).finish()


def receipt(**kw: object) -> Receipt:
    return make_receipt(**kw)


def test_receipt_round_trip_and_refusals() -> None:
    key = Ed25519PrivateKey.generate()
    pub = key.public_key().public_bytes_raw()
    jws = sign_receipt(receipt(), key, "k")
    assert verify_receipt(jws, pub, "k") == receipt()
    with pytest.raises(ReceiptError, match="kid"):
        verify_receipt(jws, pub, "other")
    with pytest.raises(ReceiptError, match="signature"):
        verify_receipt(jws, Ed25519PrivateKey.generate().public_key().public_bytes_raw(), "k")
    with pytest.raises(ReceiptError, match="three parts"):
        verify_receipt(jws + ".x", pub, "k")
    with pytest.raises(ReceiptError, match="exceeds"):
        verify_receipt("a" * (limits.RECEIPT_JWS_BYTES_MAX + 1), pub, "k")


def test_keyring_has_no_export_path() -> None:
    import copy
    import pickle

    k = Keyring()
    with pytest.raises(TypeError):
        pickle.dumps(k)
    with pytest.raises(TypeError):
        copy.deepcopy(k)
    assert "key_id" in repr(k) and not any(n for n in dir(k) if "private" in n.lower())
