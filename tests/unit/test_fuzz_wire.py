"""Hostile bytes at every wire entry point end in a VerifyError (a clear refusal), never another
exception: routing headers, padded payloads, sealed requests, chunks, receipts, evidence."""

from __future__ import annotations

import contextlib
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from ccgw.enclave.keys import Keyring
from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify.chunks import ChunkOpener
from ccgw.verify.errors import VerifyError
from ccgw.verify.hpke import open_request, parse_header, unpad
from ccgw.verify.receipts import verify_receipt

KEYS = Keyring()


def refused_or_ok(fn, *args) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(VerifyError):
        fn(*args)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_parse_header_on_arbitrary_bytes(data: bytes) -> None:
    refused_or_ok(parse_header, data)


@given(st.binary(max_size=4096))
def test_unpad_on_arbitrary_bytes(data: bytes) -> None:
    refused_or_ok(unpad, data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=1200), st.sampled_from([1, 2]))
def test_open_request_on_arbitrary_ciphertext(ct: bytes, suite: int) -> None:
    h = pb.RoutingHeader(
        version=1,
        job_id=os.urandom(16),
        model="m",
        worker_id="w",
        key_id=KEYS.key_id,
        suite=suite,
        padded_size=1024,
        max_input_tokens=1,
        max_new_tokens=1,  # type: ignore[arg-type]
    )
    sealed = pb.SealedRequest(header=h.SerializeToString(), ciphertext=ct)
    refused_or_ok(lambda: KEYS.open_request(sealed, parse_header(sealed.header)))
    assert open_request  # the same function the keyring calls


@given(st.integers(0, 10), st.binary(max_size=300), st.booleans())
def test_open_chunk_on_arbitrary_bytes(index: int, ct: bytes, final: bool) -> None:
    refused_or_ok(
        ChunkOpener(os.urandom(32), os.urandom(32), os.urandom(16)).open, index, ct, final
    )


@given(st.text(max_size=600))
def test_verify_receipt_on_arbitrary_text(jws: str) -> None:
    refused_or_ok(verify_receipt, jws, KEYS.public.receipt_ed25519, KEYS.key_id)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_verify_receipt_on_three_arbitrary_parts(raw: bytes) -> None:
    import base64

    parts = [base64.urlsafe_b64encode(raw[i::3]).rstrip(b"=").decode() for i in range(3)]
    refused_or_ok(verify_receipt, ".".join(parts), KEYS.public.receipt_ed25519, KEYS.key_id)
