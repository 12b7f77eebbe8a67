"""Split-view protection: a client trusts release entries only through a log checkpoint it has
verified itself, and only checkpoints consistent with every earlier one it saw.

    cp = advance(last_seen, note, log_name, log_key, consistency_proof)   # signature + consistency
    check_included(entry_leaf_data, index, inclusion_proof, cp)           # each release/revocation

A gateway that shows one client a release absent from the log others see must either sign a
checkpoint that includes it (then every auditor sees it too) or fail `check_included`; a gateway
that forks the log for one client fails `advance` at that client's next checkpoint (RFC 9162
consistency). Built on verify.checkpoint and verify.merkle.
"""

from __future__ import annotations

from collections.abc import Sequence

from ccgw.verify import checkpoint, merkle
from ccgw.verify.checkpoint import Checkpoint
from ccgw.verify.errors import LogError


def advance(
    previous: Checkpoint | None,
    note: str,
    log_name: str,
    log_public_raw: bytes,
    consistency_proof: Sequence[bytes] = (),
    origin: str | None = None,
) -> Checkpoint:
    """The newly verified checkpoint; LogError if its signature fails, if it goes back in size,
    or if it does not extend `previous` (the last checkpoint this party accepted)."""
    cp = checkpoint.verify(note, log_name, log_public_raw, origin)
    if previous is None:
        return cp
    if cp.origin != previous.origin:
        raise LogError(f"checkpoint is for log {cp.origin!r}, not {previous.origin!r}")
    if cp.size < previous.size:
        raise LogError(
            f"checkpoint size {cp.size} is smaller than the size {previous.size} "
            "already seen: the log was rolled back or forked"
        )
    if previous.size == 0:
        return cp
    merkle.verify_consistency(previous.size, cp.size, previous.root, cp.root, consistency_proof)
    return cp


def check_included(leaf_data: bytes, index: int, proof: Sequence[bytes], cp: Checkpoint) -> None:
    """LogError unless the entry is leaf `index` of the tree the checkpoint signs."""
    merkle.verify_inclusion(merkle.leaf_hash(leaf_data), index, cp.size, proof, cp.root)
