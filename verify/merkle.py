"""RFC 9162 Merkle trees: hashing, proofs and their verification (pure; shared by gateway, client
and auditor).

leaf = SHA-256(0x00 || data); node = SHA-256(0x01 || left || right); the tree over n leaves splits
at the largest power of two smaller than n. Verification follows RFC 9162 §2.1.3.2 (inclusion) and
§2.1.4.2 (consistency); failures raise LogError carrying what was checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ccgw.verify import limits
from ccgw.verify.errors import LogError

HASH_BYTES = 32


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """Merkle tree hash over leaf hashes (the empty tree hashes to SHA-256 of nothing)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root(leaves[:k]), root(leaves[k:]))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if not 0 <= index < n:
        raise LogError(f"leaf {index} is not in a tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if not 0 < first <= n:
        raise LogError(f"no consistency proof from size {first} to {n}")
    return _subproof(first, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def _check_proof_shape(proof: Sequence[bytes]) -> None:
    if len(proof) > limits.PROOF_HASHES_MAX:
        raise LogError(f"proof has {len(proof)} hashes; limit {limits.PROOF_HASHES_MAX}")
    if any(len(h) != HASH_BYTES for h in proof):
        raise LogError("proof hashes must be 32 bytes")


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    _check_proof_shape(proof)
    if not 0 <= index < size:
        raise LogError(f"leaf index {index} outside tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise LogError("inclusion proof is longer than the tree allows")
        if fn % 2 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != expected_root:
        raise LogError(
            f"inclusion proof for leaf {index} in tree {size} does not lead to root "
            f"{expected_root.hex()} (got {r.hex()})"
        )


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    _check_proof_shape(proof)
    if not 0 < first <= second:
        raise LogError(f"sizes {first} → {second} cannot be consistent")
    if first == second:
        if proof or first_root != second_root:
            raise LogError(f"tree {first} has two different roots")
        return
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the old root is a node of the new tree
        path = [first_root, *path]
    if not path:
        raise LogError("consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise LogError("consistency proof is longer than the trees allow")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != first_root or sr != second_root:
        raise LogError(
            f"tree {second} (root {second_root.hex()}) is not an extension of tree {first} "
            f"(root {first_root.hex()})"
        )


# -- a log too large to hold in memory: perfect subtrees addressed by (level, index) ------------
#
# Node (level L, index j) is the hash of the perfect subtree over leaves [j * 2**L, (j+1) * 2**L);
# level 0 holds the leaf hashes. A store keeps every node once it is complete (about 2n nodes for
# n leaves); any tree hash RFC 9162 needs for a tree of size n is then a fold of at most log2(n)
# stored nodes, so roots and proofs cost O(log n) reads, never a pass over the leaves.

NodeKey = tuple[int, int]


def _check_size(n: int) -> None:
    if not 0 <= n < 1 << 63:
        raise LogError(f"tree size {n} out of range")


def perfect_nodes(lo: int, hi: int) -> list[NodeKey]:
    """The stored nodes whose right fold is MTH(D[lo:hi]), largest first. Valid for the ranges
    RFC 9162 recursion produces (lo is a multiple of the largest power of two below hi - lo)."""
    out: list[NodeKey] = []
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        while lo % (1 << level):
            level -= 1
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def range_hash(lo: int, hi: int, nodes: Mapping[NodeKey, bytes]) -> bytes:
    keys = perfect_nodes(lo, hi)
    if not keys:
        return hashlib.sha256(b"").digest()
    h = nodes[keys[-1]]
    for k in reversed(keys[:-1]):
        h = node_hash(nodes[k], h)
    return h


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose tree hashes form PATH(index, D[0:size]), in proof order."""
    _check_size(size)
    if not 0 <= index < size:
        raise LogError(f"leaf {index} is not in a tree of size {size}")
    out: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    return out[::-1]


def consistency_ranges(first: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose tree hashes form PROOF(first, D[0:size]), in proof order."""
    _check_size(size)
    if not 0 < first <= size:
        raise LogError(f"no consistency proof from size {first} to {size}")
    out: list[tuple[int, int]] = []
    lo, hi, m, complete = 0, size, first, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        out.append((lo, hi))
    return out[::-1]


def nodes_for(ranges: Sequence[tuple[int, int]]) -> set[NodeKey]:
    return {k for lo, hi in ranges for k in perfect_nodes(lo, hi)}


@dataclass
class Frontier:
    """The right edge of a growing tree: the perfect subtrees covering [0, size), largest first.
    Appending is amortised O(1) (at most log2(n) hashes); the root is a fold of them."""

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; return the nodes (level, index, hash) it completes, leaf first."""
        n, h = self.size, leaf
        made = [(0, n, h)]
        level = 0
        while (n >> level) & 1:
            h = node_hash(self.hashes.pop(), h)
            level += 1
            made.append((level, n >> level, h))
        self.hashes.append(h)
        self.size = n + 1
        return made

    def root(self) -> bytes:
        if not self.hashes:
            return hashlib.sha256(b"").digest()
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = node_hash(left, h)
        return h

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Frontier:
        _check_size(size)
        if len(data) != HASH_BYTES * size.bit_count():
            raise LogError("stored frontier does not match the tree size")
        return cls(size, [data[i : i + HASH_BYTES] for i in range(0, len(data), HASH_BYTES)])
