"""Worker-signed receipts: compact JWS, EdDSA (Ed25519) only, in ONE canonical form.

Verification steps, in order (each failure is a ReceiptError naming the step):
 1. size within limits.RECEIPT_JWS_BYTES_MAX; three parts, each canonical unpadded base64url
    (no `=`, no other alphabet, no stray trailing bits: decoding and re-encoding gives the same
    text), so one receipt has exactly one spelling and the log's leaf for it is unique;
 2. protected header is a JSON object (no duplicate names) with exactly alg="EdDSA",
    typ=RECEIPT_TYP, kid=<expected key id>; `alg: none`, HS*/RS*/ES* and every other algorithm are
    refused before any key is touched;
 3. the 64-byte signature verifies with the worker's attested Ed25519 key over `header.payload`;
 4. the claims parse (no duplicate names) into a Receipt with every field present and typed;
 5. (match_job) the claims equal what the verifier itself saw: job id, request digest, answer
    digest (which covers the answer salt) and chunk count, model, worker, evidence digest, limits.

Receipts are built and checked with `cryptography` directly (no JOSE library): it is the per-job
hot path of the gateway, the client and the auditor.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, fields
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import limits
from ccgw.verify.attestation.bundle import VerifiedWorker
from ccgw.verify.chunks import AnswerDigest
from ccgw.verify.errors import ReceiptError
from ccgw.verify.jsonkeys import refuse_repeated_keys

_REPEATS = refuse_repeated_keys(ReceiptError, "receipt JSON")

RECEIPT_TYP = "ccgw-receipt+jws"
# 2: the answer digest covers the answer salt (what the client needs to open the answer).
# 3: + what a spot check needs (ADR 14): salted commitments to the input (prompt, stop sequences,
#    decoding parameters) and to the answer text, the decoding parameters, the engine version and
#    dtype. Nothing in it reveals the prompt. v2 receipts stay verifiable (their logged entries
#    keep their meaning); they cannot be spot-checked, and a dispute over one is refused.
RECEIPT_VERSION = 3
RECEIPT_VERSIONS = (2, 3)
ED25519_SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class Receipt:
    v: int
    job_id: str  # hex
    worker_id: str
    key_id: str
    account: str
    provider: str  # the account credited for this job
    model: str
    model_digest: str  # hex
    request_sha256: str  # hex
    answer_sha256: str  # hex: verify.chunks.AnswerDigest (answer salt, then every sealed chunk)
    answer_chunks: int
    input_tokens: int
    output_tokens: int
    started_at_ms: int
    finished_at_ms: int
    evidence_sha256: str  # hex
    finish_reason: str
    # v3 (empty/zero in a v2 receipt, and the commitments empty for embedding jobs)
    input_commit: str = ""  # hex, verify.consistency.input_commit
    output_commit: str = ""  # hex, verify.consistency.output_commit
    temperature: str = "0.0"  # float32 spellings (verify.consistency.f32)
    top_p: str = "1.0"
    top_k: int = 0
    max_tokens: int = 0
    seed: str = ""  # decimal, "" when the request named none
    stop_count: int = 0
    engine_version: str = ""
    dtype: str = ""

    def to_json(self) -> bytes:
        claims = {name: getattr(self, name) for name in _NAMES_BY_VERSION.get(self.v, _FIELD_NAMES)}
        return json.dumps(claims, sort_keys=True, separators=(",", ":")).encode()


_FIELD_TYPES = {f.name: f.type for f in fields(Receipt)}
_FIELD_NAMES = tuple(sorted(_FIELD_TYPES))
V3_FIELDS = frozenset(
    {
        "input_commit",
        "output_commit",
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "seed",
        "stop_count",
        "engine_version",
        "dtype",
    }
)
_NAMES_BY_VERSION = {2: tuple(n for n in _FIELD_NAMES if n not in V3_FIELDS), 3: _FIELD_NAMES}
_HEX64_OR_EMPTY = re.compile(r"([0-9a-f]{64})?")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(part: str) -> bytes:
    """Canonical unpadded base64url only: anything else (padding, whitespace, other alphabets,
    non-zero trailing bits) is refused, so every byte string has exactly one accepted spelling."""
    if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
        raise ReceiptError("receipt is not canonical unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ReceiptError("receipt is not base64url") from exc
    if b64url(raw) != part:
        raise ReceiptError("receipt is not canonical base64url (stray trailing bits)")
    return raw


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw, object_pairs_hook=_REPEATS)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ReceiptError(f"receipt {what} is not JSON") from exc
    if not isinstance(obj, dict):
        raise ReceiptError(f"receipt {what} is not a JSON object")
    return obj


def sign_receipt(receipt: Receipt, key: Ed25519PrivateKey, kid: str) -> str:
    header = json.dumps(
        {"alg": "EdDSA", "kid": kid, "typ": RECEIPT_TYP}, sort_keys=True, separators=(",", ":")
    ).encode()
    signing_input = b64url(header) + "." + b64url(receipt.to_json())
    return signing_input + "." + b64url(key.sign(signing_input.encode("ascii")))


def _split(jws: str) -> tuple[str, str, str]:
    if len(jws) > limits.RECEIPT_JWS_BYTES_MAX:
        raise ReceiptError(f"receipt exceeds {limits.RECEIPT_JWS_BYTES_MAX} bytes")
    parts = jws.split(".")
    if len(parts) != 3:
        raise ReceiptError("receipt is not a compact JWS (three parts)")
    return parts[0], parts[1], parts[2]


def unverified_header(jws: str) -> dict[str, Any]:
    return _json_object(b64url_decode(_split(jws)[0]), "header")


def verify_receipt(jws: str, public_key_raw: bytes, expected_kid: str) -> Receipt:
    """Steps 1-4: return the verified Receipt or raise ReceiptError."""
    h_part, p_part, s_part = _split(jws)
    header = _json_object(b64url_decode(h_part), "header")
    if header.get("alg") != "EdDSA":
        raise ReceiptError(f"receipt algorithm {header.get('alg')!r} refused; only EdDSA")
    if header.get("typ") != RECEIPT_TYP:
        raise ReceiptError(f"receipt typ {header.get('typ')!r} is not {RECEIPT_TYP!r}")
    if header.get("kid") != expected_kid:
        raise ReceiptError("receipt kid does not name the worker's attested key")
    if set(header) - {"alg", "typ", "kid"}:
        raise ReceiptError("receipt header has unexpected parameters")
    payload, signature = b64url_decode(p_part), b64url_decode(s_part)
    if len(signature) != ED25519_SIGNATURE_BYTES:
        raise ReceiptError("receipt signature does not verify with the worker's key")
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key_raw)
        key.verify(signature, f"{h_part}.{p_part}".encode("ascii"))
    except (InvalidSignature, ValueError) as exc:
        raise ReceiptError("receipt signature does not verify with the worker's key") from exc
    return parse_claims(payload)


def parse_claims(payload: bytes) -> Receipt:
    claims = _json_object(payload, "claims")
    version = claims.get("v")
    if type(version) is not int or version not in RECEIPT_VERSIONS:
        raise ReceiptError(f"receipt version {version!r} unsupported")
    names = _NAMES_BY_VERSION[version]
    if set(claims) != set(names):
        raise ReceiptError("receipt claims are missing fields or carry unknown ones")
    for name in names:
        value, typ = claims[name], _FIELD_TYPES[name]
        want = int if typ in (int, "int") else str
        if type(value) is not want:
            raise ReceiptError(f"receipt claim {name} has the wrong type")
        if isinstance(value, int) and not 0 <= value < 2**63:
            raise ReceiptError(f"receipt claim {name} out of range")
    for name in ("input_commit", "output_commit"):
        if name in claims and not _HEX64_OR_EMPTY.fullmatch(claims[name]):
            raise ReceiptError(f"receipt claim {name} is not a hex digest")
    return Receipt(**claims)


def match_job(receipt: Receipt, **expected: str | int) -> None:
    """Step 5: every expected claim must equal the receipt's; lists every mismatch."""
    bad = [k for k, v in expected.items() if getattr(receipt, k) != v]
    if bad:
        raise ReceiptError("receipt does not match the job: " + ", ".join(sorted(bad)))


def check_usage(receipt: Receipt, max_input_tokens: int, max_new_tokens: int) -> None:
    if receipt.input_tokens > max_input_tokens or receipt.output_tokens > max_new_tokens:
        raise ReceiptError("receipt claims more tokens than the request allowed")
    if receipt.finished_at_ms < receipt.started_at_ms:
        raise ReceiptError("receipt finishes before it starts")


def verify_job_receipt(
    jws: str,
    worker: VerifiedWorker,
    worker_id: str,
    header: pb.RoutingHeader,
    request_sha256: str,
    answer: AnswerDigest,
    **also: str | int,
) -> Receipt:
    """Steps 1-5 for one job, as both the gateway and the client run them: the receipt verifies
    with the worker's attested key and names exactly the job that was sent and the answer that
    came back (plus any `also` claims the caller knows, e.g. the provider or the usage)."""
    if not answer.finished:
        raise ReceiptError("receipt arrived before the final chunk")
    receipt = verify_receipt(jws, worker.keys.receipt_ed25519, worker.key_id)
    if "v" in also and receipt.v != also["v"]:
        raise ReceiptError(
            f"receipt version {receipt.v}; version {also['v']} is required (v3 binds the input "
            "and the answer for spot checks, ADR 14): the worker runs an older image"
        )
    match_job(
        receipt,
        job_id=header.job_id.hex(),
        worker_id=worker_id,
        key_id=worker.key_id,
        account=header.account,
        model=header.model,
        model_digest=worker.models.get(header.model, b"").hex(),
        request_sha256=request_sha256,
        answer_sha256=answer.hexdigest(),
        answer_chunks=answer.count,
        evidence_sha256=worker.evidence_sha256,
        **also,
    )
    check_usage(receipt, header.max_input_tokens, header.max_new_tokens)
    return receipt
