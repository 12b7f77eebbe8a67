"""Release and revocation log entries (ADR 10): one encoding of each signed document, their own
kinds, no money moved, each logged once; the auditor's ledger replay accepts them."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.verify import ledger_rules
from ccgw.verify import log_entries as le
from ccgw.verify.errors import MalformedError
from ccgw.verify.release.manifest import Revocation, sign_revocation
from tests.unit.release.helpers import KEY, NOW, manifest, signed

OPERATOR = Ed25519PrivateKey.generate()


def test_release_and_revocation_entries_round_trip_exactly() -> None:
    doc = signed()
    rev = sign_revocation(Revocation(doc.digest, "bad image", NOW + timedelta(days=1)), KEY)
    for d, kind in ((doc, "release"), (rev, "revocation")):
        entry = le.release_entry(d)
        assert entry.kind == kind and entry.kind not in ("receipt", "deposit")
        body = le.parse(entry)
        assert body.document == d and body.document.to_bytes() == d.to_bytes()
        assert json.loads(entry.body) == {"document": d.to_bytes().decode()}
        assert le.encode(body) == entry


def test_entries_refuse_other_spellings_and_the_wrong_document() -> None:
    doc = signed()
    rev = sign_revocation(Revocation(doc.digest, "bad", NOW), KEY)
    spaced = json.dumps(json.loads(doc.to_bytes()), indent=1)
    for kind, text in (
        ("release", spaced),  # the same document, not in its canonical bytes
        ("release", rev.to_bytes().decode()),  # a revocation under the release kind
        ("revocation", doc.to_bytes().decode()),
        ("release", "{}"),
        ("release", "x" * 70_000),
    ):
        body = le.canonical({"document": text})
        with pytest.raises(MalformedError):
            le.parse(le.Entry(kind, body))
    with pytest.raises(MalformedError):  # an extra field next to the document
        le.parse(le.Entry("release", le.canonical({"document": doc.to_bytes().decode(), "x": 1})))


def test_release_entries_move_no_money_and_are_logged_once() -> None:
    view = ledger_rules.MemoryLedger(OPERATOR.public_key().public_bytes_raw())
    doc = signed()
    other = signed(manifest(version="1.5.0"))
    rev = sign_revocation(Revocation(doc.digest, "bad", NOW), KEY)
    for i, d in enumerate((doc, other, rev)):
        effects = ledger_rules.apply(le.release_entry(d), i, view)
        assert effects.transfers == () and effects.balance_changes() == {}
        view.record(effects)
    assert view.balances == {}
    for d in (doc, rev):
        with pytest.raises(ledger_rules.RuleViolation) as again:
            ledger_rules.apply(le.release_entry(d), 9, view)
        assert again.value.problem == "release_logged_twice"


def test_a_release_larger_than_other_entries_is_logged_whole() -> None:
    from dataclasses import replace

    from ccgw.verify import limits

    base = manifest()
    many = tuple(
        replace(base.launch[0], measurement=f"{i:096x}", vcpus=1 + i % 64) for i in range(200)
    )
    entry = le.release_entry(signed(manifest(launch=many)))
    assert len(entry.body) > limits.LOG_ENTRY_BODY_BYTES_MAX  # bounded per kind, not by 16 KiB
    assert len(le.parse(entry).document.manifest.launch) == 200
