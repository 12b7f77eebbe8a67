"""The log's entries: typed, signed where a party authorises money, one leaf encoding (ADR 12).

    leaf data = encoding.fields("ccgw/v1/log-entry", kind, body)    hashed as an RFC 9162 leaf
    body      = canonical JSON of the kind's fields: sorted keys, no spaces, ASCII only, integers
                only (0 <= v < 2**63), no duplicate keys; any other spelling of the same object is
                refused, so one entry has exactly one encoding.

A signature inside a body covers encoding.fields("ccgw/v1/entry-sig", kind, canonical JSON of the
body without its signature fields): Ed25519, base64url without padding. Keys likewise.

Kinds (the registry `KINDS`; verify.ledger_rules holds what each does to balances):
  receipt         a worker-signed receipt and the digest of the evidence its key was admitted under
  deposit         operator-signed credit from outside, naming its external reference
  withdrawal      account-holder-signed debit to outside, under the account's registered key
  price_schedule  operator-signed prices per model and fee share, in force from a log index on
  account_key     binds a withdrawal key to an account: self-signed; a change also signed by the
                  previous key
  release         a release manifest signed by a release key (ADR 10); moves no money
  revocation      a revocation of a release, signed by the release's key; moves no money
To add a kind: a frozen Body class here (KIND, from_json, to_json) added to KINDS, and its rule in
verify.ledger_rules.RULES (a test checks both registries name the same kinds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccgw.verify import limits, merkle
from ccgw.verify.encoding import fields
from ccgw.verify.errors import MalformedError, ReceiptError, VerifyError
from ccgw.verify.jsonkeys import refuse_repeated_keys
from ccgw.verify.prices import Price, PriceSchedule
from ccgw.verify.receipts import Receipt, parse_claims
from ccgw.verify.release.manifest import SignedManifest, SignedRevocation, parse_document

_REPEATS = refuse_repeated_keys(MalformedError, "entry body")

LEAF_LABEL = "ccgw/v1/log-entry"
SIG_LABEL = "ccgw/v1/entry-sig"
EXTERNAL = "external"  # the outside world: deposits come from it, withdrawals go to it
_ACCOUNT = re.compile(r"[!-~]+")
_HEX64 = re.compile(r"[0-9a-f]{64}")
T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One log entry as stored and served: its kind and its canonical body bytes."""

    kind: str
    body: bytes

    def leaf(self) -> bytes:
        return fields(LEAF_LABEL, self.kind.encode(), self.body)

    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.leaf())


# -- canonical JSON --------------------------------------------------------------------------------


def canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _refuse(value: str) -> Any:
    raise MalformedError(f"entry body carries a non-integer number {value[:20]!r}")


# Kinds whose bodies may be larger than limits.LOG_ENTRY_BODY_BYTES_MAX (release documents).
BODY_BYTES_MAX: dict[str, int] = {}


def load(
    body: bytes, keys: frozenset[str], max_bytes: int = limits.LOG_ENTRY_BODY_BYTES_MAX
) -> dict[str, Any]:
    """The JSON object of a body: bounded, exactly `keys`, and in canonical form."""
    if len(body) > max_bytes:
        raise MalformedError(f"entry body exceeds {max_bytes} bytes")
    try:
        obj = json.loads(
            body,
            object_pairs_hook=_REPEATS,
            parse_float=_refuse,
            parse_constant=_refuse,
        )
    except (ValueError, RecursionError) as exc:
        raise MalformedError("entry body is not JSON") from exc
    if not isinstance(obj, dict) or set(obj) != keys:
        raise MalformedError(f"entry body must have exactly the fields {sorted(keys)}")
    if canonical(obj) != body:
        raise MalformedError("entry body is not in canonical form")
    return obj


# -- field checks ----------------------------------------------------------------------------------


def u63(v: Any, what: str = "value") -> int:
    if type(v) is not int or not 0 <= v <= limits.U63_MAX:
        raise MalformedError(f"{what} must be an integer within 0..2^63-1")
    return v


def amount(v: Any) -> int:
    if type(v) is not int or not 0 < v <= limits.AMOUNT_MICRO_MAX:
        raise MalformedError(f"amount_micro must be within 1..{limits.AMOUNT_MICRO_MAX}")
    return v


def account(v: Any) -> str:
    if (
        not isinstance(v, str)
        or len(v) > limits.ACCOUNT_NAME_BYTES_MAX
        or not _ACCOUNT.fullmatch(v)
    ):
        raise MalformedError("an account is 1..128 printable ASCII characters without spaces")
    return v


def real_account(v: Any) -> str:
    if account(v) == EXTERNAL:
        raise MalformedError(f"{EXTERNAL!r} is not an account money can be held in")
    return str(v)


def reference(v: Any) -> str:
    if (
        not isinstance(v, str)
        or not 0 < len(v) <= limits.REFERENCE_BYTES_MAX
        or not v.isprintable()
    ):
        raise MalformedError(f"a reference is 1..{limits.REFERENCE_BYTES_MAX} printable characters")
    return v


def hex64(v: Any) -> str:
    if not isinstance(v, str) or not _HEX64.fullmatch(v):
        raise MalformedError("a digest is 64 lowercase hex characters")
    return v


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(v: Any, size: int, what: str, optional: bool = False) -> bytes:
    if optional and v == "":
        return b""
    if not isinstance(v, str) or len(v) > 2 * size:
        raise MalformedError(f"{what} must be base64url")
    try:
        raw = base64.urlsafe_b64decode(v + "=" * (-len(v) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"{what} must be base64url") from exc
    if len(raw) != size or b64(raw) != v:
        raise MalformedError(f"{what} must be {size} bytes, base64url without padding")
    return raw


def verify_sig(public_raw: bytes, message: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(sig, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# -- kinds -----------------------------------------------------------------------------------------


class Body(Protocol):
    KIND: ClassVar[str]
    KEYS: ClassVar[frozenset[str]]

    def to_json(self) -> dict[str, Any]: ...


def signed_message(kind: str, obj: dict[str, Any], sig_keys: tuple[str, ...]) -> bytes:
    unsigned = {k: v for k, v in obj.items() if k not in sig_keys}
    return fields(SIG_LABEL, kind.encode(), canonical(unsigned))


@dataclass(frozen=True)
class ReceiptBody:
    KIND: ClassVar[str] = "receipt"
    KEYS: ClassVar[frozenset[str]] = frozenset({"receipt_jws", "evidence_sha256"})
    receipt_jws: str
    evidence_sha256: str

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> ReceiptBody:
        jws = o["receipt_jws"]
        if not isinstance(jws, str) or not 0 < len(jws) <= limits.RECEIPT_JWS_BYTES_MAX:
            raise MalformedError("receipt_jws must be a non-empty bounded string")
        return cls(jws, hex64(o["evidence_sha256"]))

    def to_json(self) -> dict[str, Any]:
        return {"receipt_jws": self.receipt_jws, "evidence_sha256": self.evidence_sha256}

    def claims(self) -> Receipt:
        """The receipt's claims WITHOUT checking its signature (callers verify it separately)."""
        parts = self.receipt_jws.split(".")
        if len(parts) != 3:
            raise ReceiptError("receipt is not a compact JWS (three parts)")
        try:
            payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        except (binascii.Error, ValueError) as exc:
            raise ReceiptError("receipt payload is not base64url") from exc
        return parse_claims(payload)


@dataclass(frozen=True)
class _Transfer:
    """Deposit and withdrawal bodies share their shape; the kinds differ in who signs."""

    KEYS: ClassVar[frozenset[str]] = frozenset({"account", "amount_micro", "reference", "sig"})
    account: str
    amount_micro: int
    reference: str
    sig: bytes

    @classmethod
    def from_json(cls: type[T], o: dict[str, Any]) -> T:
        return cls(  # type: ignore[call-arg]
            real_account(o["account"]),
            amount(o["amount_micro"]),
            reference(o["reference"]),
            unb64(o["sig"], 64, "sig"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "amount_micro": self.amount_micro,
            "reference": self.reference,
            "sig": b64(self.sig),
        }


@dataclass(frozen=True)
class DepositBody(_Transfer):
    KIND: ClassVar[str] = "deposit"  # signed by the operator key


@dataclass(frozen=True)
class WithdrawalBody(_Transfer):
    KIND: ClassVar[str] = "withdrawal"  # signed by the account's registered key


def _price(o: Any) -> Price:
    if not isinstance(o, dict) or set(o) != {"input_per_1k_micro", "output_per_1k_micro"}:
        raise MalformedError("a price has exactly input_per_1k_micro and output_per_1k_micro")
    return Price(o["input_per_1k_micro"], o["output_per_1k_micro"])


def _price_json(p: Price) -> dict[str, int]:
    return {
        "input_per_1k_micro": p.input_per_1k_micro,
        "output_per_1k_micro": p.output_per_1k_micro,
    }


@dataclass(frozen=True)
class PriceScheduleBody:
    KIND: ClassVar[str] = "price_schedule"  # signed by the operator key
    KEYS: ClassVar[frozenset[str]] = frozenset(
        {"default", "models", "fee_bps", "fee_account", "from_index", "sig"}
    )
    schedule: PriceSchedule
    sig: bytes

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> PriceScheduleBody:
        models = o["models"]
        if not isinstance(models, dict) or len(models) > limits.PRICED_MODELS_MAX:
            raise MalformedError(f"models must map at most {limits.PRICED_MODELS_MAX} names")
        for name in models:
            if not 0 < len(name.encode()) <= limits.MODEL_NAME_BYTES_MAX:
                raise MalformedError("a priced model name is 1..128 bytes")
        schedule = PriceSchedule(
            default=_price(o["default"]),
            models=tuple((n, _price(p)) for n, p in sorted(models.items())),
            fee_bps=u63(o["fee_bps"], "fee_bps"),
            fee_account=real_account(o["fee_account"]),
            from_index=u63(o["from_index"], "from_index"),
        )
        return cls(schedule, unb64(o["sig"], 64, "sig"))

    def to_json(self) -> dict[str, Any]:
        s = self.schedule
        return {
            "default": _price_json(s.default),
            "models": {n: _price_json(p) for n, p in s.models},
            "fee_bps": s.fee_bps,
            "fee_account": s.fee_account,
            "from_index": s.from_index,
            "sig": b64(self.sig),
        }


@dataclass(frozen=True)
class AccountKeyBody:
    KIND: ClassVar[str] = "account_key"
    KEYS: ClassVar[frozenset[str]] = frozenset(
        {"account", "public_key", "previous_key", "sig", "sig_previous"}
    )
    account: str
    public_key: bytes
    previous_key: bytes  # b"" for the account's first key
    sig: bytes  # by public_key
    sig_previous: bytes  # by previous_key; b"" for the first key

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> AccountKeyBody:
        body = cls(
            real_account(o["account"]),
            unb64(o["public_key"], 32, "public_key"),
            unb64(o["previous_key"], 32, "previous_key", optional=True),
            unb64(o["sig"], 64, "sig"),
            unb64(o["sig_previous"], 64, "sig_previous", optional=True),
        )
        if bool(body.previous_key) != bool(body.sig_previous):
            raise MalformedError("a key change carries both previous_key and sig_previous")
        return body

    def to_json(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "public_key": b64(self.public_key),
            "previous_key": b64(self.previous_key),
            "sig": b64(self.sig),
            "sig_previous": b64(self.sig_previous),
        }


AnyBody = ReceiptBody | DepositBody | WithdrawalBody | PriceScheduleBody | AccountKeyBody
KINDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    ReceiptBody.KIND: ReceiptBody.from_json,
    DepositBody.KIND: DepositBody.from_json,
    WithdrawalBody.KIND: WithdrawalBody.from_json,
    PriceScheduleBody.KIND: PriceScheduleBody.from_json,
    AccountKeyBody.KIND: AccountKeyBody.from_json,
}
_KEYS: dict[str, frozenset[str]] = {
    ReceiptBody.KIND: ReceiptBody.KEYS,
    DepositBody.KIND: _Transfer.KEYS,
    WithdrawalBody.KIND: _Transfer.KEYS,
    PriceScheduleBody.KIND: PriceScheduleBody.KEYS,
    AccountKeyBody.KIND: AccountKeyBody.KEYS,
}
SIG_KEYS: tuple[str, ...] = ("sig", "sig_previous")


def register(kind: str, keys: frozenset[str], parse: Callable[[dict[str, Any]], Any]) -> None:
    """Add a kind (issues 8 and 13: release, revocation, dispute); names are never reused."""
    if kind in KINDS or not 0 < len(kind) <= limits.LOG_ENTRY_KIND_BYTES_MAX:
        raise ValueError(f"entry kind {kind!r} is taken or too long")
    KINDS[kind], _KEYS[kind] = parse, keys


def parse(entry: Entry) -> Any:
    """The typed body of an entry; MalformedError for an unknown kind or a body that does not
    parse, is not canonical, or carries a field out of range."""
    if entry.kind not in KINDS:
        raise MalformedError(f"unknown entry kind {entry.kind[:40]!r}")
    size_max = BODY_BYTES_MAX.get(entry.kind, limits.LOG_ENTRY_BODY_BYTES_MAX)
    return KINDS[entry.kind](load(entry.body, _KEYS[entry.kind], size_max))


def encode(body: Body) -> Entry:
    return Entry(body.KIND, canonical(body.to_json()))


def message(body: Body) -> bytes:
    """The bytes a signature inside `body` covers."""
    return signed_message(body.KIND, body.to_json(), SIG_KEYS)


# -- building signed entries ------------------------------------------------------------------------

_NO_SIG = bytes(64)


def _sign(key: Ed25519PrivateKey, body: Body) -> bytes:
    return key.sign(message(body))


def deposit(operator: Ed25519PrivateKey, acct: str, amount_micro: int, ref: str) -> Entry:
    unsigned = DepositBody(real_account(acct), amount(amount_micro), reference(ref), _NO_SIG)
    return encode(DepositBody(acct, amount_micro, ref, _sign(operator, unsigned)))


def withdrawal(holder: Ed25519PrivateKey, acct: str, amount_micro: int, ref: str) -> Entry:
    unsigned = WithdrawalBody(real_account(acct), amount(amount_micro), reference(ref), _NO_SIG)
    return encode(WithdrawalBody(acct, amount_micro, ref, _sign(holder, unsigned)))


def price_schedule(operator: Ed25519PrivateKey, schedule: PriceSchedule) -> Entry:
    real_account(schedule.fee_account)
    sig = _sign(operator, PriceScheduleBody(schedule, _NO_SIG))
    return encode(PriceScheduleBody(schedule, sig))


def account_key(
    key: Ed25519PrivateKey, acct: str, previous: Ed25519PrivateKey | None = None
) -> Entry:
    pub = key.public_key().public_bytes_raw()
    prev = previous.public_key().public_bytes_raw() if previous is not None else b""
    unsigned = AccountKeyBody(real_account(acct), pub, prev, _NO_SIG, _NO_SIG if prev else b"")
    msg = message(unsigned)
    sig_prev = previous.sign(msg) if previous is not None else b""
    return encode(AccountKeyBody(acct, pub, prev, key.sign(msg), sig_prev))


def schedule_json(schedule: PriceSchedule) -> dict[str, Any]:
    """A schedule as its entry shows it, without the signature."""
    out = PriceScheduleBody(schedule, _NO_SIG).to_json()
    del out["sig"]
    return out


def entry_digest(entry: Entry) -> str:
    """Hex SHA-256 of the leaf data: a short name for an entry in reports."""
    return hashlib.sha256(entry.leaf()).hexdigest()


# -- releases (issue 8, ADR 10): signed release manifests and revocations -----------------------------
# Kinds of their own, distinct from receipts and money: the body carries the signed document
# exactly as SignedManifest.to_bytes() / SignedRevocation.to_bytes() wrote it (canonical JSON, as a
# JSON string), so its release digest and signature are those of the document itself. The entry's
# index is the position the release policy uses. Who may publish is the gateway's decision (its
# configured release keys); every verifier checks the signature against its own trusted keys.


@dataclass(frozen=True)
class ReleaseBody:
    KIND: ClassVar[str] = "release"
    KEYS: ClassVar[frozenset[str]] = frozenset({"document"})
    document: SignedManifest

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> ReleaseBody:
        doc = _release_document(o["document"])
        if not isinstance(doc, SignedManifest):
            raise MalformedError("a release entry carries a signed release manifest")
        return cls(doc)

    def to_json(self) -> dict[str, Any]:
        return {"document": self.document.to_bytes().decode("ascii")}


@dataclass(frozen=True)
class RevocationBody:
    KIND: ClassVar[str] = "revocation"
    KEYS: ClassVar[frozenset[str]] = frozenset({"document"})
    document: SignedRevocation

    @classmethod
    def from_json(cls, o: dict[str, Any]) -> RevocationBody:
        doc = _release_document(o["document"])
        if not isinstance(doc, SignedRevocation):
            raise MalformedError("a revocation entry carries a signed release revocation")
        return cls(doc)

    def to_json(self) -> dict[str, Any]:
        return {"document": self.document.to_bytes().decode("ascii")}


def _release_document(v: Any) -> SignedManifest | SignedRevocation:
    """The signed document a release or revocation entry carries, in its canonical bytes only."""
    if not isinstance(v, str) or len(v) > limits.RELEASE_DOCUMENT_BYTES_MAX or not v.isascii():
        raise MalformedError(
            f"document must be the signed document's canonical JSON "
            f"(ASCII, at most {limits.RELEASE_DOCUMENT_BYTES_MAX} bytes)"
        )
    try:
        doc = parse_document(v.encode("ascii"))
    except VerifyError as exc:
        raise MalformedError(f"document does not parse: {exc}") from None
    if doc.to_bytes() != v.encode("ascii"):
        raise MalformedError("document is not in its canonical form")
    return doc


def release_entry(document: SignedManifest | SignedRevocation) -> Entry:
    """The log entry of a signed release manifest or revocation."""
    body: ReleaseBody | RevocationBody = (
        ReleaseBody(document) if isinstance(document, SignedManifest) else RevocationBody(document)
    )
    entry = encode(body)
    parse(entry)  # the round trip through the strict parser checks every bound
    return entry


BODY_BYTES_MAX[ReleaseBody.KIND] = limits.RELEASE_ENTRY_BODY_BYTES_MAX
BODY_BYTES_MAX[RevocationBody.KIND] = limits.RELEASE_ENTRY_BODY_BYTES_MAX
register(ReleaseBody.KIND, ReleaseBody.KEYS, ReleaseBody.from_json)
register(RevocationBody.KIND, RevocationBody.KEYS, RevocationBody.from_json)
