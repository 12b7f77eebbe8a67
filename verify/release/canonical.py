"""Canonical JSON for signed release documents, and a strict reader for them.

Canonical form: objects with keys sorted, no whitespace, ASCII only (every string a document may
hold is printable ASCII, so this equals RFC 8785 JCS on that subset), integers only (no floats,
no null). `load` refuses what would make two different byte strings mean the same document:
duplicate keys, floats, NaN/Infinity, non-UTF-8, anything over the size limit; `Fields` refuses
unknown and missing keys and checks each value against a pattern, so every field is bounded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NoReturn

from ccgw.verify import limits
from ccgw.verify.errors import LimitError, MalformedError
from ccgw.verify.jsonkeys import refuse_repeated_keys

_REPEATS = refuse_repeated_keys(MalformedError, "JSON document")

INT_MAX = (1 << 53) - 1
HEX_RE = re.compile(r"[0-9a-f]+")
TEXT_RE = re.compile(r"[\x20-\x7e]*")  # printable ASCII, spaces allowed
TOKEN_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z._:+@/-]*")  # versions, names: no spaces
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def dumps(value: Any) -> bytes:
    """The canonical bytes of a JSON value made of dicts, lists, strs, ints and bools."""
    _check_canonical(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _check_canonical(value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise MalformedError("canonical JSON keys are strings")
            _check_canonical(v)
    elif isinstance(value, list):
        for v in value:
            _check_canonical(v)
    elif isinstance(value, bool | str):
        return
    elif isinstance(value, int):
        if abs(value) > INT_MAX:
            raise MalformedError("canonical JSON integers stay within ±2^53")
    else:
        raise MalformedError(f"canonical JSON has no {type(value).__name__} values")


def _refuse(text: str) -> NoReturn:
    raise MalformedError(f"JSON number {text[:20]} is not an integer")


def load(data: bytes, what: str) -> Any:
    if len(data) > limits.RELEASE_DOCUMENT_BYTES_MAX:
        raise LimitError(f"{what} is {len(data)} bytes; limit {limits.RELEASE_DOCUMENT_BYTES_MAX}")
    try:
        return json.loads(
            data.decode("utf-8", "strict"),
            object_pairs_hook=_REPEATS,
            parse_float=_refuse,
            parse_constant=_refuse,
        )
    except UnicodeDecodeError:
        raise MalformedError(f"{what} is not UTF-8") from None
    except RecursionError:
        raise MalformedError(f"{what} nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise MalformedError(f"{what} is not JSON: {exc.msg} at {exc.pos}") from None


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime(_TIME_FORMAT)


class Fields:
    """One JSON object of a document: reads each known key once, refuses unknown ones."""

    def __init__(
        self, value: Any, where: str, required: Iterable[str], optional: Iterable[str] = ()
    ):
        if not isinstance(value, dict):
            raise MalformedError(f"{where} must be a JSON object")
        req, opt = set(required), set(optional)
        unknown = sorted(set(value) - req - opt)
        missing = sorted(req - set(value))
        if unknown:
            raise MalformedError(f"{where} has unknown field(s) {', '.join(unknown)}")
        if missing:
            raise MalformedError(f"{where} lacks field(s) {', '.join(missing)}")
        self.value: dict[str, Any] = value
        self.where = where

    def has(self, key: str) -> bool:
        return key in self.value

    def raw(self, key: str) -> Any:
        return self.value[key]

    def text(self, key: str, pattern: re.Pattern[str] = TEXT_RE, max_bytes: int = 0) -> str:
        return check_text(self.value[key], f"{self.where}.{key}", pattern, max_bytes)

    def hex(self, key: str, nbytes: int | None = None) -> str:
        return check_hex(self.value[key], f"{self.where}.{key}", nbytes)

    def integer(self, key: str, low: int, high: int) -> int:
        v = self.value[key]
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise MalformedError(f"{self.where}.{key} must be an integer in {low}..{high}")
        return v

    def boolean(self, key: str) -> bool:
        v = self.value[key]
        if not isinstance(v, bool):
            raise MalformedError(f"{self.where}.{key} must be true or false")
        return v

    def time(self, key: str) -> datetime:
        v = self.text(key)
        if not _TIME_RE.fullmatch(v):
            raise MalformedError(f"{self.where}.{key} must be a UTC time YYYY-MM-DDTHH:MM:SSZ")
        try:
            return datetime.strptime(v, _TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise MalformedError(f"{self.where}.{key} is not a valid date and time") from None

    def array(self, key: str, max_items: int, nonempty: bool = True) -> list[Any]:
        v = self.value[key]
        if not isinstance(v, list):
            raise MalformedError(f"{self.where}.{key} must be a list")
        if len(v) > max_items:
            raise LimitError(f"{self.where}.{key} has {len(v)} items; limit {max_items}")
        if nonempty and not v:
            raise MalformedError(f"{self.where}.{key} is empty: leave it out, or list values")
        return v


def check_text(v: Any, where: str, pattern: re.Pattern[str] = TEXT_RE, max_bytes: int = 0) -> str:
    limit = max_bytes or limits.RELEASE_TEXT_BYTES_MAX
    if not isinstance(v, str):
        raise MalformedError(f"{where} must be a string")
    if len(v) > limit:
        raise LimitError(f"{where} is {len(v)} characters; limit {limit}")
    if not pattern.fullmatch(v):
        raise MalformedError(f"{where} has characters outside {pattern.pattern}")
    return v


def check_hex(v: Any, where: str, nbytes: int | None = None) -> str:
    s = check_text(v, where, HEX_RE)
    if len(s) % 2 or (nbytes is not None and len(s) != 2 * nbytes):
        size = f"{nbytes} bytes" if nbytes is not None else "whole bytes"
        raise MalformedError(f"{where} must be lowercase hex of {size}")
    return s


def unique_sorted(values: Iterable[str], where: str) -> list[str]:
    vals = list(values)
    if len(set(vals)) != len(vals):
        raise MalformedError(f"{where} repeats a value")
    return sorted(vals)
