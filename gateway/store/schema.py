"""The tables, written once for both dialects (types and the node table's storage differ).

The log and what it commits to:
  log_entries   idx, kind, canonical body, SHA-256 of the leaf (unique: an entry is logged once)
  log_nodes     every complete perfect subtree (level, index) -> hash; level 0 = leaf hashes
  log_head      the size and the frontier (right-edge subtrees) of the tree: appends and the root
                without reading other nodes
  checkpoints   signed tree heads, by size
  evidence      evidence bundles by digest (receipts name them)
The ledger view, rebuilt from log_entries alone by rebuild_view:
  postings      legs of the transfers each entry causes, keyed by seq = idx * legs-max + leg
  accounts      running balance per account (+ held_micro, the sum of its pending holds)
  uniques       (namespace, key) taken by an entry: job ids, deposit and withdrawal references
  account_keys  withdrawal keys per account, by the index of the entry that set them
  schedules     price schedules by the index of their entry, with from_index
Gateway-side reservations (not in the log):
  holds         one per job id: pending | posted | voided
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ccgw.gateway.errors import BadRequest, PermissionDenied

FORMAT = b"2"  # meta 'format'; 1 was the receipts/transfers layout before the log of entries


@dataclass(frozen=True)
class Dialect:
    name: str
    blob: str
    bigint: str
    without_rowid: str


SQLITE = Dialect("sqlite", "BLOB", "INTEGER", " WITHOUT ROWID")
POSTGRES = Dialect("postgresql", "BYTEA", "BIGINT", "")

_DDL = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value {blob} NOT NULL);
CREATE TABLE log_entries (
    idx {bigint} PRIMARY KEY, kind TEXT NOT NULL, body {blob} NOT NULL,
    entry_hash {blob} NOT NULL UNIQUE);
CREATE TABLE log_nodes (
    level INTEGER NOT NULL, idx {bigint} NOT NULL, hash {blob} NOT NULL,
    PRIMARY KEY (level, idx)){without_rowid};
CREATE TABLE log_head (
    id INTEGER PRIMARY KEY CHECK (id = 1), size {bigint} NOT NULL, frontier {blob} NOT NULL);
INSERT INTO log_head VALUES (1, 0, {empty});
CREATE TABLE checkpoints (size {bigint} PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE evidence (digest TEXT PRIMARY KEY, bundle {blob} NOT NULL);
CREATE TABLE postings (
    seq {bigint} PRIMARY KEY, log_index {bigint} NOT NULL, transfer_id TEXT NOT NULL,
    kind TEXT NOT NULL, job_id TEXT NOT NULL, account TEXT NOT NULL,
    amount_micro {bigint} NOT NULL);
CREATE TABLE accounts (
    account TEXT PRIMARY KEY, balance_micro {bigint} NOT NULL, held_micro {bigint} NOT NULL);
CREATE TABLE uniques (
    namespace TEXT NOT NULL, key TEXT NOT NULL, log_index {bigint} NOT NULL,
    PRIMARY KEY (namespace, key));
CREATE TABLE account_keys (
    account TEXT NOT NULL, log_index {bigint} NOT NULL, public_key {blob} NOT NULL,
    PRIMARY KEY (account, log_index));
CREATE TABLE schedules (
    log_index {bigint} PRIMARY KEY, from_index {bigint} NOT NULL, body {blob} NOT NULL);
CREATE INDEX schedules_from ON schedules (from_index, log_index);
CREATE TABLE holds (
    job_id {blob} PRIMARY KEY, account TEXT NOT NULL,
    amount_micro {bigint} NOT NULL CHECK (amount_micro >= 0),
    state TEXT NOT NULL CHECK (state IN ('pending', 'posted', 'voided')),
    created_ms {bigint} NOT NULL);
CREATE INDEX holds_pending ON holds (created_ms) WHERE state = 'pending';
"""

VIEW_TABLES = ("postings", "accounts", "uniques", "account_keys", "schedules")


def ddl(d: Dialect) -> list[str]:
    empty = "X''" if d.name == "sqlite" else "''::bytea"
    text = _DDL.format(blob=d.blob, bigint=d.bigint, without_rowid=d.without_rowid, empty=empty)
    return [s.strip() for s in text.split(";") if s.strip()]


def initialise(tx: Any, d: Dialect, operator: bytes) -> None:
    """Create the tables of a new database, owned by `operator` (the log key's public key)."""
    if len(operator) != 32:
        raise BadRequest("a new database needs the operator's Ed25519 public key")
    for stmt in ddl(d):
        tx.run(stmt)
    tx.run("INSERT INTO meta (name, value) VALUES ('format', ?)", (FORMAT,))
    tx.run("INSERT INTO meta (name, value) VALUES ('operator_key', ?)", (operator,))


def operator_of(tx: Any, expected: bytes | None, where: str) -> bytes:
    """The operator key a database was created for; refuses another format or another key."""
    try:
        row = tx.one("SELECT value FROM meta WHERE name = 'format'")
    except Exception:  # noqa: BLE001 - no meta table (either dialect's error): not our format
        row = None
    if row is None or bytes(row[0]) != FORMAT:
        raise BadRequest(f"{where} is not a ccgw database of format {FORMAT.decode()}")
    row = tx.one("SELECT value FROM meta WHERE name = 'operator_key'")
    assert row is not None
    operator = bytes(row[0])
    if expected is not None and expected != operator:
        raise PermissionDenied(f"{where} belongs to another log key")
    return operator
