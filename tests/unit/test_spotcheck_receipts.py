"""Receipt v3 (ADR 14): commitments that bind the input and the answer without revealing them,
the decoding parameters, and v2 receipts that stay verifiable."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.verify.consistency import (
    Decoding,
    JobInput,
    commit_salt,
    f32,
    input_commit,
    job_input_of,
    output_commit,
    receipt_claims,
)
from ccgw.verify.errors import ReceiptError
from ccgw.verify.receipts import Receipt, b64url, sign_receipt, verify_receipt
from tests.support.receipts import make_receipt

KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key().public_bytes_raw()


def _receipt(v: int, **kw: object) -> Receipt:
    return make_receipt(v=v, **kw)


def _signed_claims(claims: dict[str, object]) -> str:
    header = json.dumps({"alg": "EdDSA", "kid": "k", "typ": "ccgw-receipt+jws"}).encode()
    si = b64url(header) + "." + b64url(json.dumps(claims).encode())
    return si + "." + b64url(KEY.sign(si.encode()))


def test_v2_receipts_still_verify_and_keep_their_bytes() -> None:
    r2 = _receipt(2)
    claims = json.loads(r2.to_json())
    assert "input_commit" not in claims and "dtype" not in claims
    got = verify_receipt(sign_receipt(r2, KEY, "k"), PUB, "k")
    assert got.v == 2 and got.input_commit == "" and got.to_json() == r2.to_json()


def test_each_version_has_exactly_its_fields() -> None:
    r3 = _receipt(3, input_commit="ab" * 32, output_commit="cd" * 32, max_tokens=8, dtype="x")
    assert verify_receipt(sign_receipt(r3, KEY, "k"), PUB, "k") == r3
    v3_claims = json.loads(r3.to_json())
    as_v2 = {**v3_claims, "v": 2}  # a v2 receipt carrying v3 fields
    with pytest.raises(ReceiptError, match="missing fields or carry unknown"):
        verify_receipt(_signed_claims(as_v2), PUB, "k")
    short = {k: v for k, v in v3_claims.items() if k != "dtype"}
    with pytest.raises(ReceiptError, match="missing fields or carry unknown"):
        verify_receipt(_signed_claims(short), PUB, "k")
    with pytest.raises(ReceiptError, match="not a hex digest"):
        verify_receipt(_signed_claims({**v3_claims, "input_commit": "AB" * 32}), PUB, "k")
    with pytest.raises(ReceiptError, match="version 4 unsupported"):
        verify_receipt(_signed_claims({**v3_claims, "v": 4}), PUB, "k")


def _inner(prompt: str = "hi", **sampling: object) -> cpb.InnerRequest:
    return cpb.InnerRequest(
        prompt=prompt,
        response_key=b"\x01" * 32,
        sampling=cpb.SamplingParams(**sampling),  # type: ignore[arg-type]
    )


def test_commitments_bind_every_input_and_reveal_nothing_without_the_salt() -> None:
    base = receipt_claims(_inner(), 16, "answer")
    assert set(base) == {
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "seed",
        "stop_count",
        "input_commit",
        "output_commit",
    }
    variants = [
        receipt_claims(_inner("hj"), 16, "answer"),
        receipt_claims(_inner(stop=["x"]), 16, "answer"),
        receipt_claims(_inner(temperature=0.5), 16, "answer"),
        receipt_claims(_inner(top_k=3), 16, "answer"),
        receipt_claims(_inner(seed=7), 16, "answer"),
        receipt_claims(_inner(), 17, "answer"),
    ]
    for v in variants:
        assert v["input_commit"] != base["input_commit"]
    assert receipt_claims(_inner(), 16, "answeR")["output_commit"] != base["output_commit"]
    # the salt is the client's and the worker's: another response key gives other commitments
    other = cpb.InnerRequest(prompt="hi", response_key=b"\x02" * 32)
    assert receipt_claims(other, 16, "answer")["input_commit"] != base["input_commit"]
    # what a dispute discloses (the salt, the input) recomputes them
    job = job_input_of(_inner(), 16)
    assert job is not None
    salt = commit_salt(b"\x01" * 32)
    assert input_commit(salt, job) == base["input_commit"]
    assert output_commit(salt, "answer") == base["output_commit"]
    assert JobInput.from_json(json.loads(json.dumps(job.to_json()))) == job


def test_float_parameters_are_spelled_as_the_wire_carries_them() -> None:
    inner = _inner(temperature=0.7, top_p=0.9)
    d = Decoding.of(inner.sampling.temperature, inner.sampling.top_p, 0, 1, None, ())
    assert d.temperature == f32(0.7) == f32(inner.sampling.temperature)
    assert Decoding.of(0.0, 0.0, 0, 1, None, ()).top_p == "1.0"  # 0 = off, as the engine reads it
    assert job_input_of(cpb.InnerRequest(embed=cpb.EmbedInput(texts=["x"])), 1) is None


def test_a_client_requiring_v3_refuses_a_v2_receipt_by_name() -> None:
    from types import SimpleNamespace

    from ccgw.verify.receipts import verify_job_receipt

    worker = SimpleNamespace(keys=SimpleNamespace(receipt_ed25519=PUB), key_id="k")
    done = SimpleNamespace(finished=True)
    jws = sign_receipt(_receipt(2), KEY, "k")
    with pytest.raises(ReceiptError, match="version 3 is required"):
        verify_job_receipt(
            jws,
            worker,  # type: ignore[arg-type]
            "w",
            cpb.RoutingHeader(),
            "00",
            done,  # type: ignore[arg-type]
            v=3,
        )
