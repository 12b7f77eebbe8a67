"""The log's Merkle tree in SQL: the head (size and frontier) for appends and the root, and every
complete perfect subtree as a node, so roots and proofs for any size cost O(log n) node reads in
one query, never a pass over the leaves (verify.merkle explains the addressing)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ccgw.gateway.errors import BadRequest
from ccgw.verify import log_entries as le
from ccgw.verify import merkle

if TYPE_CHECKING:
    from ccgw.gateway.store.rules import Tx

NODES_PER_QUERY_MAX = 200


def head(tx: Tx, lock: bool = False) -> merkle.Frontier:
    q = "SELECT size, frontier FROM log_head WHERE id = 1"
    row = tx.locked(q) if lock else tx.one(q)
    assert row is not None, "log_head row missing"
    return merkle.Frontier.from_bytes(int(row[0]), bytes(row[1]))


def append_leaf(tx: Tx, frontier: merkle.Frontier, entry: le.Entry) -> int:
    """The entry and the tree nodes it completes; the head is written by write_head."""
    index = frontier.size
    leaf = entry.leaf_hash()
    tx.run(
        "INSERT INTO log_entries (idx, kind, body, entry_hash) VALUES (?, ?, ?, ?)",
        (index, entry.kind, entry.body, leaf),
    )
    tx.many("INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)", frontier.append(leaf))
    return index


def write_head(tx: Tx, frontier: merkle.Frontier) -> None:
    tx.run(
        "UPDATE log_head SET size = ?, frontier = ? WHERE id = 1",
        (frontier.size, frontier.to_bytes()),
    )


def nodes(tx: Tx, keys: Iterable[merkle.NodeKey]) -> dict[merkle.NodeKey, bytes]:
    out: dict[merkle.NodeKey, bytes] = {}
    todo = sorted(set(keys))
    for i in range(0, len(todo), NODES_PER_QUERY_MAX):
        part = todo[i : i + NODES_PER_QUERY_MAX]
        where = " OR ".join(["(level = ? AND idx = ?)"] * len(part))
        for level, idx, h in tx.all(
            f"SELECT level, idx, hash FROM log_nodes WHERE {where}",  # noqa: S608 - placeholders only
            [v for k in part for v in k],
        ):
            out[(int(level), int(idx))] = bytes(h)
    if len(out) != len(todo):
        raise BadRequest("the stored tree is missing nodes for this size")
    return out


def proof(tx: Tx, ranges: list[tuple[int, int]]) -> list[bytes]:
    have = nodes(tx, merkle.nodes_for(ranges))
    return [merkle.range_hash(lo, hi, have) for lo, hi in ranges]


def root(tx: Tx, size: int) -> bytes:
    return proof(tx, [(0, size)])[0] if size else merkle.root([])
