"""Intel TDX collateral, verified (the verify layer): Intel PCS "TDX TCB info" v3 and "TD_QE
enclave identity" v2 JSON documents, exactly as served, with their issuer chain.

A document is trusted only when all of these hold (Intel's quote-verification rules):
 1. it is in PCS form `{"tcbInfo"|"enclaveIdentity": {...}, "signature": "<hex r‖s>"}`;
 2. its issuer chain verifies to the pinned Intel SGX Root CA at `now` (cryptography's path
    validation: every issuer a CA) and the signing certificate is "Intel SGX TCB Signing";
 3. the ECDSA P-256/SHA-256 signature verifies over the exact bytes of the inner JSON value;
 4. it is current: issueDate ≤ now ≤ nextUpdate.
Evaluating a verified document against a quote (FMSPC, TCB levels, QE identity fields) is the
validate layer's job: verify.attestation.tcb_status. Nothing from an unverified document is used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ccgw.verify import limits
from ccgw.verify.attestation.roots import Root
from ccgw.verify.attestation.x509chain import load_pem_chain, verify_chain_webpki
from ccgw.verify.errors import (
    ChainError,
    FreshnessError,
    MalformedError,
    SignatureError,
    VerifyError,
)

TCB_SIGNER_CN = "Intel SGX TCB Signing"
TCB_INFO = "tcbInfo"
QE_IDENTITY = "enclaveIdentity"


@dataclass(frozen=True)
class SignedDoc:
    """A verified Intel PCS document: `body` is the inner JSON object."""

    kind: str  # "tcbInfo" | "enclaveIdentity"
    body: dict[str, Any]
    issue_date: datetime
    next_update: datetime

    @property
    def ident(self) -> str:
        return str(self.body.get("id", ""))


def split_signed(raw: bytes, key: str) -> tuple[dict[str, Any], bytes, bytes]:
    """(inner object, the exact signed bytes, the 64-byte signature)."""
    if len(raw) > limits.COLLATERAL_ITEM_BYTES_MAX:
        raise MalformedError(f"Intel {key} document too large")
    text = raw.strip()
    prefix = b'{"' + key.encode() + b'":'
    cut = text.rfind(b',"signature":')
    if not text.startswith(prefix) or cut < 0:
        raise MalformedError(f"Intel {key} document is not in PCS form")
    try:
        doc = json.loads(text)
        sig = bytes.fromhex(doc["signature"])
        body = doc[key]
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedError(f"Intel {key} document does not parse") from exc
    if not isinstance(body, dict) or len(sig) != 64 or set(doc) != {key, "signature"}:
        raise MalformedError(f"Intel {key} document is malformed")
    return body, text[len(prefix) : cut], sig


def _date(body: dict[str, Any], key: str, what: str) -> datetime:
    try:
        return datetime.fromisoformat(str(body[key]).replace("Z", "+00:00"))
    except (KeyError, ValueError) as exc:
        raise MalformedError(f"Intel {what} lacks a valid {key}") from exc


def _signer(chain_pem: bytes, roots: Sequence[Root], now: datetime) -> ec.EllipticCurvePublicKey:
    chain = load_pem_chain(chain_pem, "Intel TCB signing")
    if not chain:
        raise MalformedError("Intel TCB signing chain is empty")
    leaf = chain[0]
    cns = leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not cns or cns[0].value != TCB_SIGNER_CN:
        raise ChainError(f"Intel collateral signer is not {TCB_SIGNER_CN!r}")
    verify_chain_webpki(leaf, chain[1:], [r.cert for r in roots], now, "Intel TCB signing")
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise SignatureError("Intel TCB signing key is not ECDSA P-256")
    return key


def verify_doc(
    raw: bytes, key: str, chains: Sequence[bytes], roots: Sequence[Root], now: datetime
) -> SignedDoc:
    """Steps 1–4 of the module doc, trying each supplied issuer chain. Raises the first failure of
    the last chain tried (ChainError when none was supplied)."""
    body, signed, sig = split_signed(raw, key)
    if not chains:
        raise ChainError("no Intel TCB signing chain supplied")
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    last: VerifyError = ChainError("no Intel TCB signing chain supplied")
    for chain_pem in chains:
        try:
            pub = _signer(chain_pem, roots, now)
            pub.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            last = SignatureError(f"Intel {key} signature does not verify")
            continue
        except VerifyError as exc:
            last = exc
            continue
        issued, nxt = _date(body, "issueDate", key), _date(body, "nextUpdate", key)
        if not issued <= now <= nxt:
            raise FreshnessError(
                f"Intel {key} is not current at {now.isoformat()} "
                f"(issued {issued.isoformat()}, next update {nxt.isoformat()})"
            )
        return SignedDoc(key, body, issued, nxt)
    raise last


def find_doc(
    candidates: Sequence[bytes],
    key: str,
    want: dict[str, str],
    chains: Sequence[bytes],
    roots: Sequence[Root],
    now: datetime,
) -> tuple[SignedDoc | None, list[str]]:
    """The first candidate whose body matches `want` (case-insensitive field values, e.g. id and
    fmspc) and that verifies; otherwise None and why each matching candidate was set aside."""
    reasons: list[str] = []
    for i, raw in enumerate(candidates):
        try:
            body, _, _ = split_signed(raw, key)
        except VerifyError as exc:
            reasons.append(f"#{i}: {exc}")
            continue
        if any(str(body.get(k, "")).lower() != v.lower() for k, v in want.items()):
            continue
        try:
            return verify_doc(raw, key, chains, roots, now), reasons
        except VerifyError as exc:
            reasons.append(str(exc))
    return None, reasons
