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
# Vendor collateral (CRLs, Intel TCB info / QE identity, signing chains, NVIDIA RIMs).
COLLATERAL_ITEM_BYTES_MAX: Final = 256 * KIB
COLLATERAL_ITEMS_MAX: Final = 64
COLLATERAL_BYTES_MAX: Final = 512 * KIB

# Receipts.
RECEIPT_JWS_BYTES_MAX: Final = 8 * KIB
JOB_ID_BYTES: Final = 16

# Merkle proofs (hashes per proof).
PROOF_HASHES_MAX: Final = 64

# Log entries and the ledger they commit to (ADR 12).
LOG_ENTRY_BODY_BYTES_MAX: Final = 16 * KIB
LOG_ENTRY_KIND_BYTES_MAX: Final = 32
ACCOUNT_NAME_BYTES_MAX: Final = 128
REFERENCE_BYTES_MAX: Final = 128  # deposit / withdrawal references
AMOUNT_MICRO_MAX: Final = 2**53  # one deposit, withdrawal or reward
BALANCE_MICRO_MAX: Final = 2**62  # any balance, so sums stay within a signed 64-bit column
PRICE_PER_1K_MICRO_MAX: Final = 2**32
PRICED_MODELS_MAX: Final = 256  # models named in one price schedule
TRANSFER_LEGS_MAX: Final = 8  # postings caused by one log entry
ACCOUNT_KEY_CHANGES_MAX: Final = 64  # account-key entries per account
U63_MAX: Final = 2**63 - 1  # largest value any wire integer may carry

# Releases (verify/release): signed manifests and revocations, as every party parses them.
RELEASE_DOCUMENT_BYTES_MAX: Final = 64 * KIB  # one signed manifest or revocation, as JSON
# A release/revocation log entry: the document as a JSON string (quotes escaped) and its wrapper.
RELEASE_ENTRY_BODY_BYTES_MAX: Final = 2 * RELEASE_DOCUMENT_BYTES_MAX + 64
RELEASE_TEXT_BYTES_MAX: Final = 256  # version, reason, names, versions: one bounded string each
RELEASE_LAUNCH_ENTRIES_MAX: Final = 256  # allowed launch measurements in one manifest
RELEASE_ALLOWED_VALUES_MAX: Final = 64  # driver / VBIOS versions, golden values per index
RELEASES_CONSIDERED_MAX: Final = 1024  # manifests one policy decision may be given
REVOCATIONS_CONSIDERED_MAX: Final = 4096

# Launch-measurement inputs (verify/measure): firmware, kernel and shapes are hostile files.
FIRMWARE_BYTES_MAX: Final = 32 * MIB
FIRMWARE_TABLE_ENTRIES_MAX: Final = 64  # GUIDed entries in the OVMF footer table
FIRMWARE_SECTIONS_MAX: Final = 64  # SEV metadata or TDVF sections
FIRMWARE_MEASURED_PAGES_MAX: Final = 1 << 16  # 256 MiB of pages: bounds the hashing work
KERNEL_BYTES_MAX: Final = 256 * MIB
INITRD_BYTES_MAX: Final = 4 * 1024 * MIB
KERNEL_CMDLINE_BYTES_MAX: Final = 4 * KIB
VCPUS_MAX: Final = 512

# Cloud wrappers around CPU evidence (verify/attestation/azure_hcl.py).
HCL_RUNTIME_CLAIMS_BYTES_MAX: Final = 16 * KIB  # the paravisor's runtime claims JSON

# Spot checks and disputes (verify/consistency.py, verify/disputes.py; ADR 14).
DISPUTE_FILE_BYTES_MAX: Final = 2 * MIB  # a dispute's evidence: receipt, input, answer, verdict
DISPUTE_REASON_BYTES_MAX: Final = 256  # the verdict's reason, as logged
