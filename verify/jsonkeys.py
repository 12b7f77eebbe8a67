"""One rule for every JSON document a verifier parses (receipts, log entry bodies, release
documents, cloud runtime claims): a repeated member name is refused, so a document has exactly one
meaning whichever parser reads it (RFC 8259 leaves duplicates undefined)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def refuse_repeated_keys(
    error: Callable[[str], Exception], what: str
) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """An `object_pairs_hook` that raises `error("<what> repeats the key 'k'")` on a repeat."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise error(f"{what} repeats the key {k!r}")
            out[k] = v
        return out

    return hook
