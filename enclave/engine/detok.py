"""Turn a stream of token ids into a stream of safe text deltas.

Two things make this more than `decode(ids)`:
- a character can be split across tokens (byte-level BPE emits UTF-8 bytes), so text is released
  only when it decodes to complete characters; and decoding only a sliding window of recent
  tokens keeps the cost per token constant instead of re-decoding the whole answer;
- a stop sequence can be split across tokens too, so any tail of the text that could still grow
  into a stop sequence is held back, and the text is cut before the stop sequence when it appears.
Every delta says how many tokens it covers; the deltas of one answer cover all of its tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

_PENDING_TOKENS_MAX = 4  # a UTF-8 character is at most 4 bytes: emit what we have after that


class IncrementalDecoder:
    """Text of the tokens pushed so far, released in complete characters.

    Keeps (prefix, read) offsets: the text of ids[prefix:read] has been released; decoding
    ids[prefix:] and subtracting it gives the new text with the left context a tokenizer needs
    (e.g. SentencePiece's leading-space rule)."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def push(self, token: int) -> str:
        self._ids.append(token)
        return self._advance(final=False)

    def flush(self) -> str:
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        if self._read == len(self._ids):
            return ""
        before = self._decode(self._ids[self._prefix : self._read])
        text = self._decode(self._ids[self._prefix :])
        incomplete = text.endswith("\ufffd")
        if not final and incomplete and len(self._ids) - self._read < _PENDING_TOKENS_MAX:
            return ""
        if len(text) <= len(before) or not text.startswith(before):
            if not final:
                return ""  # e.g. a special token that decodes to nothing: keep its context
            self._prefix = self._read = len(self._ids)
            return text[len(before) :] if text.startswith(before) else ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(before) :]


@dataclass
class Chunk:
    text: str
    tokens: int


class StopFilter:
    """Holds back text that may still become a stop sequence; cuts at the first stop found."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""  # text not yet released
        self._tokens = 0  # tokens not yet accounted for in a released chunk
        self.stopped = False

    def feed(self, text: str, tokens: int) -> Chunk | None:
        """Add the text of `tokens` new tokens; return what may be released now."""
        self._tokens += tokens
        self._held += text
        if not self._stops:
            return self._release(len(self._held))
        hits = [i for i in (self._held.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            self._held = self._held[: min(hits)]
            return self._release(len(self._held))
        return self._release(len(self._held) - self._partial_tail())

    def finish(self) -> Chunk | None:
        """Everything left, at the end of the answer."""
        return self._release(len(self._held), final=True)

    def _partial_tail(self) -> int:
        """Length of the longest tail of the held text that is a proper prefix of a stop."""
        held = self._held
        for n in range(min(len(held), self._longest - 1), 0, -1):
            tail = held[-n:]
            if any(s.startswith(tail) for s in self._stops):
                return n
        return 0

    def _release(self, upto: int, final: bool = False) -> Chunk | None:
        if upto <= 0 and not (final and self._tokens):
            return None
        chunk = Chunk(self._held[:upto], self._tokens)
        self._held, self._tokens = self._held[upto:], 0
        return chunk
