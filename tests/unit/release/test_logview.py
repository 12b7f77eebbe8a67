"""Split views: a release is trusted only through a checkpoint whose signature verifies, which
extends the last checkpoint seen, and whose tree includes the release's entry."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.verify import merkle
from ccgw.verify.checkpoint import Checkpoint, sign
from ccgw.verify.errors import LogError
from ccgw.verify.release.logview import advance, check_included
from tests.unit.release.helpers import manifest, signed

LOG_KEY = Ed25519PrivateKey.generate()
PUB = LOG_KEY.public_key().public_bytes_raw()
ORIGIN = "ccgw.example/log"
ENTRIES = [b"receipt-%d" % i for i in range(9)]
ENTRIES[4] = signed().to_bytes()  # a release entry among receipts
LEAVES = [merkle.leaf_hash(e) for e in ENTRIES]


def note(leaves: list[bytes], key: Ed25519PrivateKey = LOG_KEY) -> str:
    return sign(Checkpoint(ORIGIN, len(leaves), merkle.root(leaves)), key, "ccgw-log")


def test_first_checkpoint_and_consistent_successor() -> None:
    cp5 = advance(None, note(LEAVES[:5]), "ccgw-log", PUB, origin=ORIGIN)
    cp9 = advance(cp5, note(LEAVES), "ccgw-log", PUB, merkle.consistency_proof(5, LEAVES))
    assert cp9.size == 9
    assert advance(cp9, note(LEAVES), "ccgw-log", PUB) == cp9  # same checkpoint again


def test_forged_checkpoint_signature() -> None:
    with pytest.raises(LogError):
        advance(None, note(LEAVES, Ed25519PrivateKey.generate()), "ccgw-log", PUB)


def test_inconsistent_with_earlier_checkpoint() -> None:
    cp5 = advance(None, note(LEAVES[:5]), "ccgw-log", PUB)
    forked = [*LEAVES[:3], merkle.leaf_hash(b"rewritten"), *LEAVES[4:]]
    with pytest.raises(LogError, match="not an extension"):
        advance(cp5, note(forked), "ccgw-log", PUB, merkle.consistency_proof(5, forked))
    cp9 = advance(cp5, note(LEAVES), "ccgw-log", PUB, merkle.consistency_proof(5, LEAVES))
    with pytest.raises(LogError, match="smaller"):
        advance(cp9, note(LEAVES[:5]), "ccgw-log", PUB)


def test_release_inclusion() -> None:
    cp = advance(None, note(LEAVES), "ccgw-log", PUB)
    check_included(ENTRIES[4], 4, merkle.inclusion_proof(4, LEAVES), cp)
    # a release shown to one client but absent from the log it checks
    other = signed(manifest(version="9.9.9")).to_bytes()
    with pytest.raises(LogError):
        check_included(other, 4, merkle.inclusion_proof(4, LEAVES), cp)
    # a proof that does not match this checkpoint (made for a different tree)
    with pytest.raises(LogError):
        check_included(ENTRIES[4], 4, merkle.inclusion_proof(4, LEAVES[:7]), cp)
    # an index beyond the checkpoint
    with pytest.raises(LogError):
        check_included(ENTRIES[4], 9, merkle.inclusion_proof(4, LEAVES), cp)
