"""The binding rule: what a worker's hardware evidence commits to, and the digests derived from it.

report_data (64 bytes, the SEV-SNP / TDX user-data field) is SHA-512 over a domain-separated,
length-prefixed encoding of
  1. the worker's public keys (both HPKE keys and the receipt key),
  2. the challenger's 32-byte nonce,
  3. the SHA-256 of the GPU evidence (empty when the worker has none) -- so CPU and GPU evidence
     cannot be spliced together from two machines,
  4. the digests of the model weights loaded -- so a client knows which weights will answer,
  5. the worker's issue time in milliseconds.
Every verifier recomputes it from the bundle; nothing here trusts a value it did not compute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ccgw.protos.ccgw.v1 import common_pb2 as pb
from ccgw.verify import limits
from ccgw.verify.encoding import field, fields, items, u64
from ccgw.verify.errors import LimitError, MalformedError

X25519_PUBLIC_BYTES = 32
MLKEM768_X25519_PUBLIC_BYTES = 1184 + 32
ED25519_PUBLIC_BYTES = 32
REPORT_DATA_BYTES = 64


def check_keys(keys: pb.WorkerKeys) -> None:
    for name, value, size in (
        ("hpke_x25519", keys.hpke_x25519, X25519_PUBLIC_BYTES),
        ("hpke_mlkem768_x25519", keys.hpke_mlkem768_x25519, MLKEM768_X25519_PUBLIC_BYTES),
        ("receipt_ed25519", keys.receipt_ed25519, ED25519_PUBLIC_BYTES),
    ):
        if len(value) != size:
            raise MalformedError(f"worker key {name} is {len(value)} bytes, expected {size}")


def keys_encoding(keys: pb.WorkerKeys) -> bytes:
    check_keys(keys)
    return fields(
        "ccgw/v1/worker-keys", keys.hpke_x25519, keys.hpke_mlkem768_x25519, keys.receipt_ed25519
    )


def key_id(keys: pb.WorkerKeys) -> str:
    """Stable identifier of a worker's key set: hex of the first 16 bytes of its SHA-256."""
    return hashlib.sha256(keys_encoding(keys)).hexdigest()[:32]


def gpu_evidence_sha256(gpus: Sequence[pb.GpuEvidence]) -> bytes:
    """SHA-256 of all GPU evidence, or b"" when there is none."""
    if not gpus:
        return b""
    if len(gpus) > limits.GPUS_PER_BUNDLE_MAX:
        raise LimitError(f"{len(gpus)} GPUs in one bundle exceeds {limits.GPUS_PER_BUNDLE_MAX}")
    enc = items(fields("gpu", u64(g.index), g.arch.encode(), g.report, g.cert_chain) for g in gpus)
    return hashlib.sha256(field(b"ccgw/v1/gpu-evidence") + enc).digest()


def models_encoding(models: Sequence[pb.ModelDigest]) -> bytes:
    if len(models) > limits.MODELS_PER_WORKER_MAX:
        raise LimitError(f"{len(models)} models exceeds {limits.MODELS_PER_WORKER_MAX}")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise MalformedError("model names repeat")
    for m in models:
        if not m.name or len(m.name.encode()) > limits.MODEL_NAME_BYTES_MAX:
            raise MalformedError("model name empty or too long")
        if len(m.sha256) != 32:
            raise MalformedError(f"model {m.name!r} digest is not 32 bytes")
    ordered = sorted(models, key=lambda m: m.name)
    return items(fields("model", m.name.encode(), m.sha256) for m in ordered)


def report_data(
    keys: pb.WorkerKeys,
    nonce: bytes,
    gpu_sha256: bytes,
    models: Sequence[pb.ModelDigest],
    issued_at_ms: int,
) -> bytes:
    if len(nonce) != limits.NONCE_BYTES:
        raise MalformedError(f"nonce is {len(nonce)} bytes, expected {limits.NONCE_BYTES}")
    if len(gpu_sha256) not in (0, 32):
        raise MalformedError("GPU evidence digest must be empty or 32 bytes")
    return hashlib.sha512(
        fields(
            "ccgw/v1/report-data",
            keys_encoding(keys),
            nonce,
            gpu_sha256,
            models_encoding(models),
            u64(issued_at_ms),
        )
    ).digest()


def bundle_report_data(bundle: pb.EvidenceBundle) -> bytes:
    """The report_data a bundle's CPU evidence must carry."""
    return report_data(
        bundle.keys,
        bundle.nonce,
        gpu_evidence_sha256(bundle.gpus),
        bundle.models,
        bundle.issued_at_ms,
    )


def evidence_sha256(bundle: pb.EvidenceBundle) -> str:
    """Canonical digest (hex) of an evidence bundle; receipts and log leaves name it."""
    if len(bundle.cpu_certs) > limits.CERTS_PER_CHAIN_MAX:
        raise LimitError("too many CPU certificates")
    enc = fields(
        "ccgw/v1/evidence",
        u64(bundle.version),
        u64(int(bundle.platform)),
        bundle.cpu_report,
        items(bytes(c) for c in bundle.cpu_certs),
        gpu_evidence_sha256(bundle.gpus),
        keys_encoding(bundle.keys),
        bundle.nonce,
        models_encoding(bundle.models),
        u64(bundle.issued_at_ms),
    )
    return hashlib.sha256(enc).hexdigest()
