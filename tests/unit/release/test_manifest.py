"""Release manifests and revocations: canonical bytes, signatures, strict bounded parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.keys import public_pem
from ccgw.verify import limits
from ccgw.verify.errors import LimitError, MalformedError, SignatureError
from ccgw.verify.release import canonical
from ccgw.verify.release.manifest import (
    ReleaseKey,
    SignedManifest,
    SignedRevocation,
    load_release_key,
    parse_document,
    parse_manifest,
)
from tests.unit.release.helpers import KEY, TRUSTED, manifest, revocation, signed


def test_round_trip_is_canonical_and_stable() -> None:
    doc = signed()
    data = doc.to_bytes()
    again = parse_document(data)
    assert isinstance(again, SignedManifest) and again == doc
    assert again.to_bytes() == data
    assert data == canonical.dumps(json.loads(data))  # sorted keys, no whitespace
    assert again.verify([TRUSTED]) == TRUSTED
    assert parse_manifest(doc.manifest.canonical()) == doc.manifest
    # launch order in the object does not change the digest: canonical form sorts it
    m = doc.manifest
    assert manifest(launch=tuple(reversed(m.launch))).digest() == m.digest()


def test_revocation_round_trip() -> None:
    rev = revocation(signed())
    again = parse_document(rev.to_bytes())
    assert isinstance(again, SignedRevocation) and again == rev
    assert again.verify([TRUSTED]) == TRUSTED


def _tamper(doc: dict[str, Any], path: list[str | int], value: object) -> bytes:
    node: Any = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["manifest", "version"], "1.4.1"),
        (["manifest", "not_after"], "2099-01-01T00:00:00Z"),
        (["manifest", "launch", 0, "measurement"], "00" * 48),
        (["manifest", "launch", 0, "vcpus"], 64),
        (["manifest", "models", "llama"], "ff" * 32),
        (["manifest", "gpu", "required"], False),
        (["manifest", "gpu", "driver_versions"], ["1.0"]),
    ],
)
def test_altered_field_fails_signature(path: list[str | int], value: object) -> None:
    doc = json.loads(signed().to_bytes())
    forged = parse_document(_tamper(doc, path, value))
    with pytest.raises(SignatureError, match="does not verify"):
        forged.verify([TRUSTED])


def test_wrong_key_fails() -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match="not trusted"):
        signed(key=other).verify([TRUSTED])
    with pytest.raises(SignatureError, match="not trusted"):
        revocation(signed(), key=other).verify([TRUSTED])
    # a signature by another key under the trusted key's id
    doc = json.loads(signed(key=other).to_bytes())
    doc["signature"]["key_id"] = TRUSTED.key_id
    with pytest.raises(SignatureError, match="does not verify"):
        parse_document(json.dumps(doc).encode()).verify([TRUSTED])


def test_release_key_pem() -> None:
    assert load_release_key(public_pem(KEY)).key_id == TRUSTED.key_id
    with pytest.raises(MalformedError):
        load_release_key(b"not a key")


def _doc() -> dict[str, Any]:
    return json.loads(signed().to_bytes())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda d: d["manifest"].update(extra=1), MalformedError, "unknown field"),
        (lambda d: d.update(extra=1), MalformedError, "unknown field"),
        (lambda d: d["manifest"].pop("models"), MalformedError, "lacks"),
        (lambda d: d["manifest"]["launch"][0].update(note="x"), MalformedError, "unknown field"),
        (lambda d: d["manifest"].update(kind="ccgw.release/v2"), MalformedError, "kind"),
        (lambda d: d["manifest"].update(version="1.0 beta"), MalformedError, "characters"),
        (lambda d: d["manifest"].update(version="1" * 65), LimitError, "limit"),
        (lambda d: d["manifest"].update(not_before="2026-01-01"), MalformedError, "UTC time"),
        (
            lambda d: d["manifest"].update(not_before="2026-13-01T00:00:00Z"),
            MalformedError,
            "valid date",
        ),
        (
            lambda d: d["manifest"].update(not_after=d["manifest"]["not_before"]),
            MalformedError,
            "later",
        ),
        (
            lambda d: d["manifest"]["launch"][0].update(measurement="AB" * 48),
            MalformedError,
            "characters",
        ),
        (
            lambda d: d["manifest"]["launch"][0].update(measurement="ab" * 32),
            MalformedError,
            "48 bytes",
        ),
        (lambda d: d["manifest"]["launch"][0].update(platform="sgx"), MalformedError, "platform"),
        (lambda d: d["manifest"]["launch"][0].update(vcpus=0), MalformedError, "integer"),
        (lambda d: d["manifest"]["launch"][0].update(vcpus=True), MalformedError, "integer"),
        (
            lambda d: d["manifest"]["launch"][0].update(rtmrs={"1": "11" * 48}),
            MalformedError,
            "only TDX",
        ),
        (
            lambda d: d["manifest"]["launch"].append(d["manifest"]["launch"][0]),
            MalformedError,
            "repeats",
        ),
        (lambda d: d["manifest"].update(launch=[]), MalformedError, "empty"),
        (
            lambda d: d["manifest"].update(launch=[d["manifest"]["launch"][0]] * 300),
            LimitError,
            "limit",
        ),
        (
            lambda d: d["manifest"]["models"].update({"bad name": "00" * 32}),
            MalformedError,
            "characters",
        ),
        (lambda d: d["manifest"]["models"].update(x="00" * 31), MalformedError, "32 bytes"),
        (lambda d: d["manifest"]["gpu"].update(driver_versions=[]), MalformedError, "empty"),
        (
            lambda d: d["manifest"]["gpu"].update(driver_versions=["1", "1"]),
            MalformedError,
            "repeats",
        ),
        (
            lambda d: d["manifest"]["gpu"].update(measurements={"01": ["aa"]}),
            MalformedError,
            "index",
        ),
        (lambda d: d["signature"].update(ed25519="AAAA"), MalformedError, "characters"),
        (lambda d: d["signature"].update(key_id="zz"), MalformedError, "characters"),
    ],
)
def test_strict_parsing(mutate: Any, error: type[Exception], match: str) -> None:
    d = _doc()
    mutate(d)
    with pytest.raises(error, match=match):
        parse_document(json.dumps(d).encode())


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b'{"a": 1, "a": 2}', MalformedError),
        (b'{"a": 1.5}', MalformedError),
        (b'{"a": NaN}', MalformedError),
        (b"\xff\xfe", MalformedError),
        (b"[" * 5000 + b"]" * 5000, MalformedError),
        (b" " * (limits.RELEASE_DOCUMENT_BYTES_MAX + 1), LimitError),
        (b"[1, 2]", MalformedError),
    ],
)
def test_hostile_json(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_document(data)


def test_revocation_fields() -> None:
    d = json.loads(revocation(signed()).to_bytes())
    d["revocation"]["reason"] = "   "
    with pytest.raises(MalformedError, match="say why"):
        parse_document(json.dumps(d).encode())
    d["revocation"]["reason"] = "x"
    d["revocation"]["release"] = "ab"
    with pytest.raises(MalformedError, match="32 bytes"):
        parse_document(json.dumps(d).encode())


def test_key_id_is_stable() -> None:
    assert ReleaseKey(KEY.public_key()).key_id == TRUSTED.key_id
    assert len(TRUSTED.key_id) == 16
