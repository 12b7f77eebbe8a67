"""Protocol limits every party enforces identically (units last in names).

Operational limits of one process (deadlines, queue depths, in-flight jobs) live in that process's
config; these are properties of the wire format itself, so the client, gateway, worker and auditor
must agree on them.
"""

from __future__ import annotations

from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB

# Inner requests are padded to one of these sizes before sealing (bytes).
PAD_BUCKETS_BYTES: Final[tuple[int, ...]] = (
    1 * KIB,
    4 * KIB,
    16 * KIB,
    64 * KIB,
    256 * KIB,
    1 * MIB,
)
INNER_REQUEST_BYTES_MAX: Final = PAD_BUCKETS_BYTES[-1]
# HPKE overhead: enc (32 for X25519, 1120 for ML-KEM-768+X25519) + 16-byte tag, rounded up.
SEALED_REQUEST_OVERHEAD_BYTES_MAX: Final = 2 * KIB
SEALED_REQUEST_BYTES_MAX: Final = INNER_REQUEST_BYTES_MAX + SEALED_REQUEST_OVERHEAD_BYTES_MAX
ROUTING_HEADER_BYTES_MAX: Final = 1 * KIB

# Answer chunk plaintexts are padded to a multiple of this (bytes), and bounded.
CHUNK_PAD_BYTES: Final = 64
CHUNK_PLAINTEXT_BYTES_MAX: Final = 64 * KIB
CHUNK_CIPHERTEXT_BYTES_MAX: Final = CHUNK_PLAINTEXT_BYTES_MAX + 16
ANSWER_CHUNKS_MAX: Final = 1 << 20
# A refusal's reason, sealed to the client (verify.chunks.seal_refusal): text and sealed bytes.
REFUSAL_TEXT_BYTES_MAX: Final = 512
REFUSAL_SEALED_BYTES_MAX: Final = 640

# Evidence.
EVIDENCE_BUNDLE_BYTES_MAX: Final = 256 * KIB
CPU_REPORT_BYTES_MAX: Final = 64 * KIB
GPU_REPORT_BYTES_MAX: Final = 64 * KIB
GPU_CERT_CHAIN_BYTES_MAX: Final = 64 * KIB
GPUS_PER_BUNDLE_MAX: Final = 16
CERTS_PER_CHAIN_MAX: Final = 8
CERT_BYTES_MAX: Final = 16 * KIB
MODELS_PER_WORKER_MAX: Final = 64
MODEL_NAME_BYTES_MAX: Final = 128
NONCE_BYTES: Final = 32

# Receipts.
RECEIPT_JWS_BYTES_MAX: Final = 8 * KIB
JOB_ID_BYTES: Final = 16

# Merkle proofs (hashes per proof).
PROOF_HASHES_MAX: Final = 64
