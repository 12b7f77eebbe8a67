"""Worker-signed receipts: compact JWS, EdDSA (Ed25519) only.

Verification steps, in order (each failure is a ReceiptError naming the step):
 1. size within limits.RECEIPT_JWS_BYTES_MAX; three base64url parts;
 2. protected header is JSON with exactly alg="EdDSA", typ=RECEIPT_TYP, kid=<expected key id>;
    `alg: none`, HS*/RS*/ES* and every other algorithm are refused before any key is touched;
 3. the signature verifies with the worker's attested Ed25519 key;
 4. the claims parse into a Receipt with every field present and of the right type;
 5. (match_job) the claims equal what the verifier itself saw: job id, request digest, answer
    digest and chunk count, model, worker, evidence digest, token limits.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import limits
from ccgw.verify.attestation.bundle import VerifiedWorker
from ccgw.verify.chunks import AnswerDigest
from ccgw.verify.errors import ReceiptError

RECEIPT_TYP = "ccgw-receipt+jws"
RECEIPT_VERSION = 1


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
    answer_sha256: str  # hex
    answer_chunks: int
    input_tokens: int
    output_tokens: int
    started_at_ms: int
    finished_at_ms: int
    evidence_sha256: str  # hex
    finish_reason: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


_FIELD_TYPES = {f.name: f.type for f in fields(Receipt)}


def sign_receipt(receipt: Receipt, key: Ed25519PrivateKey, kid: str) -> str:
    return jwt.api_jws.encode(
        receipt.to_json(), key, algorithm="EdDSA", headers={"typ": RECEIPT_TYP, "kid": kid}
    )


def _b64decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ReceiptError("receipt is not base64url") from exc


def unverified_header(jws: str) -> dict[str, Any]:
    if len(jws) > limits.RECEIPT_JWS_BYTES_MAX:
        raise ReceiptError(f"receipt exceeds {limits.RECEIPT_JWS_BYTES_MAX} bytes")
    parts = jws.split(".")
    if len(parts) != 3:
        raise ReceiptError("receipt is not a compact JWS (three parts)")
    try:
        header = json.loads(_b64decode(parts[0]))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReceiptError("receipt header is not JSON") from exc
    if not isinstance(header, dict):
        raise ReceiptError("receipt header is not a JSON object")
    return header


def verify_receipt(jws: str, public_key_raw: bytes, expected_kid: str) -> Receipt:
    """Steps 1-4: return the verified Receipt or raise ReceiptError."""
    header = unverified_header(jws)
    if header.get("alg") != "EdDSA":
        raise ReceiptError(f"receipt algorithm {header.get('alg')!r} refused; only EdDSA")
    if header.get("typ") != RECEIPT_TYP:
        raise ReceiptError(f"receipt typ {header.get('typ')!r} is not {RECEIPT_TYP!r}")
    if header.get("kid") != expected_kid:
        raise ReceiptError("receipt kid does not name the worker's attested key")
    if set(header) - {"alg", "typ", "kid"}:
        raise ReceiptError("receipt header has unexpected parameters")
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key_raw)
        payload = jwt.api_jws.decode(jws, key, algorithms=["EdDSA"])
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise ReceiptError("receipt signature does not verify with the worker's key") from exc
    return parse_claims(payload)


def parse_claims(payload: bytes) -> Receipt:
    try:
        claims = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReceiptError("receipt claims are not JSON") from exc
    if not isinstance(claims, dict) or set(claims) != set(_FIELD_TYPES):
        raise ReceiptError("receipt claims are missing fields or carry unknown ones")
    for name, typ in _FIELD_TYPES.items():
        value = claims[name]
        want = int if typ in (int, "int") else str
        if type(value) is not want:
            raise ReceiptError(f"receipt claim {name} has the wrong type")
        if isinstance(value, int) and not 0 <= value < 2**63:
            raise ReceiptError(f"receipt claim {name} out of range")
    receipt = Receipt(**claims)
    if receipt.v != RECEIPT_VERSION:
        raise ReceiptError(f"receipt version {receipt.v} unsupported")
    return receipt


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
