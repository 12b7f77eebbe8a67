"""Release manifests and revocations: what a release allows, signed by a release key (Ed25519).

A signed manifest document (canonical JSON, see canonical.py):

    {"manifest": {
        "kind": "ccgw.release/v1",
        "version": "1.4.0",
        "not_before": "2026-01-01T00:00:00Z", "not_after": "2026-07-01T00:00:00Z",
        "launch": [{"platform": "sev-snp", "measurement": "<hex48>", "vcpus": 8,
                    "vcpu_type": "EPYC-v4"},
                   {"platform": "tdx", "measurement": "<MRTD hex48>", "vcpus": 8, "vcpu_type": "",
                    "rtmrs": {"1": "<hex48>", "2": "<hex48>"}}],
        "models": {"llama": "<sha256 hex of the weights directory>"},
        "gpu": {"required": true, "driver_versions": ["550.90.07"],          (optional; lists
                "vbios_versions": ["96.00.9F.00.01"], "measurements": {"1": ["<hex>"]}}  optional)
        "source": "git 1a2b3c…, deploy/image"                                (optional)
     },
     "signature": {"key_id": "<hex8>", "ed25519": "<base64 of 64 bytes>"}}

The signature covers encode("ccgw/v1/release-manifest", canonical manifest bytes) (verify.encoding),
and the release digest — the name revocations and logs use — is the SHA-256 of those same bytes.
A revocation is {"revocation": {"kind": "ccgw.release-revocation/v1", "release": "<digest>",
"reason": "…", "revoked_at": "…"}, "signature": …}, signed the same way under its own label.
Parsing refuses unknown fields, missing fields, repeated values and anything unbounded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ccgw.verify import limits
from ccgw.verify.encoding import fields as encode_fields
from ccgw.verify.errors import MalformedError, SignatureError
from ccgw.verify.release import canonical
from ccgw.verify.release.canonical import TOKEN_RE, Fields, check_hex, check_text, unique_sorted

MANIFEST_KIND = "ccgw.release/v1"
REVOCATION_KIND = "ccgw.release-revocation/v1"
_MANIFEST_LABEL = "ccgw/v1/release-manifest"
_REVOCATION_LABEL = "ccgw/v1/release-revocation"
PLATFORMS = ("sev-snp", "tdx")
MEASUREMENT_BYTES = 48
RTMR_INDICES = (0, 1, 2, 3)
_VCPU_TYPE_RE = re.compile(r"[0-9A-Za-z._-]*")


# --- keys ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseKey:
    """A release public key and its id (first 8 bytes of SHA-256 of the raw key, hex)."""

    public: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id(self.public)


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(public.public_bytes_raw()).digest()[:8].hex()


def load_release_key(pem: bytes) -> ReleaseKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise MalformedError("release key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise MalformedError("release key is not an Ed25519 public key")
    return ReleaseKey(key)


# --- manifest -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchEntry:
    platform: str  # "sev-snp" | "tdx"
    measurement: str  # hex: SEV-SNP MEASUREMENT / TDX MRTD
    vcpus: int
    vcpu_type: str  # the QEMU CPU model the measurement was computed for; "" for TDX
    rtmrs: Mapping[int, str] = field(default_factory=dict)  # TDX: RTMR index → hex, when pinned

    def shape(self) -> str:
        kind = f" {self.vcpu_type}" if self.vcpu_type else ""
        return f"{self.vcpus} vCPU{'s' if self.vcpus != 1 else ''}{kind}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "platform": self.platform,
            "measurement": self.measurement,
            "vcpus": self.vcpus,
            "vcpu_type": self.vcpu_type,
        }
        if self.rtmrs:
            out["rtmrs"] = {str(i): v for i, v in self.rtmrs.items()}
        return out

    @classmethod
    def from_json(cls, value: Any, where: str) -> LaunchEntry:
        f = Fields(value, where, ("platform", "measurement", "vcpus", "vcpu_type"), ("rtmrs",))
        platform = f.text("platform")
        if platform not in PLATFORMS:
            raise MalformedError(f"{where}.platform {platform!r} is not one of {PLATFORMS}")
        rtmrs: dict[int, str] = {}
        if f.has("rtmrs"):
            if platform != "tdx":
                raise MalformedError(f"{where}.rtmrs: only TDX has RTMRs")
            raw = Fields(f.raw("rtmrs"), f"{where}.rtmrs", (), [str(i) for i in RTMR_INDICES])
            if not raw.value:
                raise MalformedError(f"{where}.rtmrs is empty: leave it out, or pin values")
            rtmrs = {int(k): raw.hex(k, MEASUREMENT_BYTES) for k in sorted(raw.value)}
        return cls(
            platform=platform,
            measurement=f.hex("measurement", MEASUREMENT_BYTES),
            vcpus=f.integer("vcpus", 1, limits.VCPUS_MAX),
            vcpu_type=f.text("vcpu_type", _VCPU_TYPE_RE, 64),
            rtmrs=rtmrs,
        )

    def key(self) -> tuple[str, int, str, str, tuple[tuple[int, str], ...]]:
        return (
            self.platform,
            self.vcpus,
            self.vcpu_type,
            self.measurement,
            tuple(sorted(self.rtmrs.items())),
        )


@dataclass(frozen=True)
class GpuReference:
    """Reference values for the worker's GPUs. A list that is None is not pinned."""

    required: bool
    driver_versions: frozenset[str] | None = None
    vbios_versions: frozenset[str] | None = None
    measurements: Mapping[int, frozenset[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"required": self.required}
        if self.driver_versions is not None:
            out["driver_versions"] = sorted(self.driver_versions)
        if self.vbios_versions is not None:
            out["vbios_versions"] = sorted(self.vbios_versions)
        if self.measurements:
            out["measurements"] = {str(i): sorted(v) for i, v in self.measurements.items()}
        return out

    @classmethod
    def from_json(cls, value: Any, where: str) -> GpuReference:
        f = Fields(
            value, where, ("required",), ("driver_versions", "vbios_versions", "measurements")
        )
        n = limits.RELEASE_ALLOWED_VALUES_MAX

        def versions(key: str) -> frozenset[str] | None:
            if not f.has(key):
                return None
            vals = [check_text(v, f"{where}.{key}", TOKEN_RE, 64) for v in f.array(key, n)]
            return frozenset(unique_sorted(vals, f"{where}.{key}"))

        measurements: dict[int, frozenset[str]] = {}
        if f.has("measurements"):
            m = f.raw("measurements")
            if not isinstance(m, dict) or not m or len(m) > n:
                raise MalformedError(f"{where}.measurements must map 1..{n} indices to values")
            for k in sorted(m):
                if not k.isdigit() or k != str(int(k)) or int(k) > 255:
                    raise MalformedError(f"{where}.measurements key {k!r} is not an index 0..255")
                sub = Fields({"v": m[k]}, f"{where}.measurements.{k}", ("v",))
                vals = [check_hex(v, f"{where}.measurements.{k}") for v in sub.array("v", n)]
                measurements[int(k)] = frozenset(unique_sorted(vals, sub.where))
        return cls(
            f.boolean("required"),
            versions("driver_versions"),
            versions("vbios_versions"),
            measurements,
        )


@dataclass(frozen=True)
class ReleaseManifest:
    version: str
    not_before: datetime
    not_after: datetime
    launch: tuple[LaunchEntry, ...]
    models: Mapping[str, str]  # model name → SHA-256 hex of its weights directory
    gpu: GpuReference | None = None
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": MANIFEST_KIND,
            "version": self.version,
            "not_before": canonical.format_time(self.not_before),
            "not_after": canonical.format_time(self.not_after),
            "launch": [e.to_json() for e in sorted(self.launch, key=LaunchEntry.key)],
            "models": dict(self.models),
        }
        if self.gpu is not None:
            out["gpu"] = self.gpu.to_json()
        if self.source:
            out["source"] = self.source
        return out

    def canonical(self) -> bytes:
        return self._canonical

    @cached_property
    def _canonical(self) -> bytes:  # computed once: policies name releases by digest often
        return canonical.dumps(self.to_json())

    def signed_message(self) -> bytes:
        return encode_fields(_MANIFEST_LABEL, self.canonical())

    def digest(self) -> str:
        """The release digest: SHA-256 of exactly what the release key signs."""
        return self._digest

    @cached_property
    def _digest(self) -> str:
        return hashlib.sha256(self.signed_message()).hexdigest()

    @classmethod
    def from_json(cls, value: Any) -> ReleaseManifest:
        w = "manifest"
        f = Fields(
            value,
            w,
            ("kind", "version", "not_before", "not_after", "launch", "models"),
            ("gpu", "source"),
        )
        if f.raw("kind") != MANIFEST_KIND:
            raise MalformedError(f"{w}.kind must be {MANIFEST_KIND!r}")
        launch = tuple(
            LaunchEntry.from_json(e, f"{w}.launch[{i}]")
            for i, e in enumerate(f.array("launch", limits.RELEASE_LAUNCH_ENTRIES_MAX))
        )
        if len({e.key() for e in launch}) != len(launch):
            raise MalformedError(f"{w}.launch repeats an entry")
        models = f.raw("models")
        if not isinstance(models, dict) or len(models) > limits.MODELS_PER_WORKER_MAX:
            raise MalformedError(
                f"{w}.models must map at most {limits.MODELS_PER_WORKER_MAX} "
                "model names to SHA-256 hex digests"
            )
        checked = {
            check_text(k, f"{w}.models key", TOKEN_RE, limits.MODEL_NAME_BYTES_MAX): check_hex(
                v, f"{w}.models.{k}", 32
            )
            for k, v in models.items()
        }
        m = cls(
            version=f.text("version", TOKEN_RE, 64),
            not_before=f.time("not_before"),
            not_after=f.time("not_after"),
            launch=launch,
            models=checked,
            gpu=GpuReference.from_json(f.raw("gpu"), f"{w}.gpu") if f.has("gpu") else None,
            source=f.text("source") if f.has("source") else "",
        )
        if m.not_after <= m.not_before:
            raise MalformedError(f"{w}.not_after must be later than not_before")
        return m


# --- revocation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Revocation:
    release: str  # the revoked release's digest (hex SHA-256)
    reason: str
    revoked_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": REVOCATION_KIND,
            "release": self.release,
            "reason": self.reason,
            "revoked_at": canonical.format_time(self.revoked_at),
        }

    def signed_message(self) -> bytes:
        return encode_fields(_REVOCATION_LABEL, canonical.dumps(self.to_json()))

    @classmethod
    def from_json(cls, value: Any) -> Revocation:
        f = Fields(value, "revocation", ("kind", "release", "reason", "revoked_at"))
        if f.raw("kind") != REVOCATION_KIND:
            raise MalformedError(f"revocation.kind must be {REVOCATION_KIND!r}")
        reason = f.text("reason")
        if not reason.strip():
            raise MalformedError("revocation.reason must say why")
        return cls(f.hex("release", 32), reason, f.time("revoked_at"))


# --- signed documents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Signature:
    key_id: str
    ed25519: bytes

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "ed25519": base64.b64encode(self.ed25519).decode()}

    @classmethod
    def from_json(cls, value: Any, where: str) -> Signature:
        f = Fields(value, where, ("key_id", "ed25519"))
        b64 = f.text("ed25519", re.compile(r"[A-Za-z0-9+/=]{88}"))
        try:
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            raise MalformedError(f"{where}.ed25519 is not base64") from None
        if len(raw) != 64 or base64.b64encode(raw).decode() != b64:
            raise MalformedError(f"{where}.ed25519 must be the canonical base64 of 64 bytes")
        return cls(f.hex("key_id", 8), raw)

    def check(self, message: bytes, keys: Iterable[ReleaseKey], what: str) -> ReleaseKey:
        for k in keys:
            if k.key_id == self.key_id:
                try:
                    k.public.verify(self.ed25519, message)
                except InvalidSignature:
                    raise SignatureError(
                        f"{what}: signature by release key {self.key_id} does "
                        "not verify (forged or altered)"
                    ) from None
                return k
        raise SignatureError(f"{what}: signed by release key {self.key_id}, which is not trusted")


@dataclass(frozen=True)
class SignedManifest:
    manifest: ReleaseManifest
    signature: Signature

    @property
    def digest(self) -> str:
        return self.manifest.digest()

    def to_bytes(self) -> bytes:
        """The canonical document: what a release log entry carries."""
        return canonical.dumps(
            {"manifest": self.manifest.to_json(), "signature": self.signature.to_json()}
        )

    def verify(self, keys: Iterable[ReleaseKey]) -> ReleaseKey:
        """The trusted key that signed it, or SignatureError."""
        what = f"release {self.manifest.version} ({self.digest[:16]})"
        return self.signature.check(self.manifest.signed_message(), keys, what)


@dataclass(frozen=True)
class SignedRevocation:
    revocation: Revocation
    signature: Signature

    def to_bytes(self) -> bytes:
        return canonical.dumps(
            {"revocation": self.revocation.to_json(), "signature": self.signature.to_json()}
        )

    def verify(self, keys: Iterable[ReleaseKey]) -> ReleaseKey:
        what = f"revocation of {self.revocation.release[:16]}"
        return self.signature.check(self.revocation.signed_message(), keys, what)


def _signature(message: bytes, key: Ed25519PrivateKey) -> Signature:
    return Signature(key_id(key.public_key()), key.sign(message))


def sign_manifest(manifest: ReleaseManifest, key: Ed25519PrivateKey) -> SignedManifest:
    return SignedManifest(manifest, _signature(manifest.signed_message(), key))


def sign_revocation(revocation: Revocation, key: Ed25519PrivateKey) -> SignedRevocation:
    return SignedRevocation(revocation, _signature(revocation.signed_message(), key))


def parse_manifest(data: bytes) -> ReleaseManifest:
    """An unsigned manifest (what `ccgw release build` writes and `sign` reads)."""
    return ReleaseManifest.from_json(canonical.load(data, "release manifest"))


def parse_document(data: bytes) -> SignedManifest | SignedRevocation:
    """A signed manifest or revocation; the signature is parsed, not yet verified."""
    value = canonical.load(data, "release document")
    if isinstance(value, dict) and "revocation" in value:
        f = Fields(value, "document", ("revocation", "signature"))
        return SignedRevocation(
            Revocation.from_json(f.raw("revocation")),
            Signature.from_json(f.raw("signature"), "signature"),
        )
    f = Fields(value, "document", ("manifest", "signature"))
    return SignedManifest(
        ReleaseManifest.from_json(f.raw("manifest")),
        Signature.from_json(f.raw("signature"), "signature"),
    )
