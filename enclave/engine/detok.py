"""Turn a stream of token ids into a stream of safe text deltas.

Two things make this more than `decode(ids)`:
- a character can be split across tokens (byte-level BPE emits UTF-8 bytes; SentencePiece's byte
  fallback emits `<0xNN>` tokens), so text is released only once no later token can change it;
- a stop sequence can be split across tokens too, so any tail of the text that could still grow
  into a stop sequence is held back, and the text is cut before the stop sequence when it appears.
Every delta says how many tokens it covers; the deltas of one answer cover all of its tokens.

The streamed text equals the tokenizer's full decode of the same ids (`skip_special_tokens`), for
EVERY id sequence, including ones that are not valid UTF-8 (a cut emoji at the token limit, a model
emitting stray bytes). Re-decoding a sliding window and subtracting cannot promise that: a
replacement character released early may later become part of a real character, and from then on
the window's text no longer starts with what was released. So `TextDecoder` reproduces the
`tokenizers` decoders of the supported families from the vocabulary itself, in a form that
streams exactly (cost per token is constant):
- ByteLevel (GPT-2, Llama 3, Qwen2, SmolLM2): every token is bytes; the answer is their
  concatenation decoded as UTF-8 with maximal-subpart replacement, which Python's incremental
  UTF-8 decoder produces chunk by chunk without ever revising a released character;
- SentencePiece style (Llama 2, Mistral): `Replace`/`Metaspace` per token, `ByteFallback`
  (a run of `<0xNN>` tokens decodes as one UTF-8 string, or as one U+FFFD per byte if any of it
  is invalid: the run's text is released when the run ends), `Fuse`, then `Strip` of leading
  characters of the whole text.
A tokenizer whose decoder is anything else is refused at load (ModelError), not streamed wrongly.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ccgw.enclave.errors import ModelError

_BYTE_TOKEN = re.compile(r"<0x(\+?[0-9A-Fa-f]{1,2})>")
_BYTE, _TEXT = 0, 1  # kinds of a token after the per-token steps


def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's map from the printable stand-in characters back to the bytes they encode."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars: dict[str, int] = {chr(b): b for b in keep}
    extra = 0
    for b in range(256):
        if b not in keep:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _byte_value(token: str) -> int | None:
    """`<0xNN>` as the `ByteFallback` decoder reads it (six bytes long, hex digits inside)."""
    if len(token.encode("utf-8")) != 6:
        return None
    m = _BYTE_TOKEN.fullmatch(token)
    return int(m.group(1), 16) if m else None


@dataclass(frozen=True)
class _Plan:
    byte_level: bool = False
    replaces: tuple[tuple[str, str], ...] = ()  # per token, in order (after metaspace)
    metaspace: str | None = None  # replacement char of a Metaspace step
    metaspace_first_strip: bool = False  # Metaspace drops it entirely from the first token
    byte_fallback: bool = False
    strip: tuple[str, int] | None = None  # (char, count) stripped from the start of the text


def _plan(spec: dict[str, Any] | None) -> _Plan:
    if not isinstance(spec, dict):
        raise ModelError("tokenizer.json has no decoder; ccgw streams only known decoders")
    steps = spec.get("decoders") if spec.get("type") == "Sequence" else [spec]
    if not isinstance(steps, list) or not steps:
        raise ModelError("tokenizer.json decoder Sequence is empty")
    plan: dict[str, Any] = {"replaces": []}
    fused = False
    stage = 0  # 0: per-token text steps, 1: after ByteFallback, 2: after Fuse, 3: after Strip
    for step in steps:
        kind = step.get("type") if isinstance(step, dict) else None
        if kind == "ByteLevel" and len(steps) == 1:
            plan["byte_level"] = True
        elif kind == "Replace" and stage == 0 and plan.get("metaspace") is None:
            pattern = step.get("pattern")
            content = step.get("content")
            if not (isinstance(pattern, dict) and isinstance(pattern.get("String"), str)):
                raise ModelError("tokenizer decoder Replace with a regex is not supported")
            if not isinstance(content, str) or not pattern["String"]:
                raise ModelError("tokenizer decoder Replace has a bad pattern or content")
            plan["replaces"].append((pattern["String"], content))
        elif kind == "Metaspace" and stage == 0 and not plan["replaces"]:
            rep = step.get("replacement", "\u2581")
            if not isinstance(rep, str) or len(rep) != 1:
                raise ModelError("tokenizer decoder Metaspace needs a one-character replacement")
            scheme = step.get("prepend_scheme")
            if scheme is None:
                scheme = "always" if step.get("add_prefix_space", True) else "never"
            plan["metaspace"] = rep
            plan["metaspace_first_strip"] = scheme != "never"
        elif kind == "ByteFallback" and stage == 0:
            plan["byte_fallback"], stage = True, 1
        elif kind == "Fuse" and stage <= 1:
            fused, stage = True, 2
        elif kind == "Strip" and fused and stage == 2:
            content, start, stop = step.get("content"), step.get("start"), step.get("stop")
            if not (isinstance(content, str) and len(content) == 1 and isinstance(start, int)):
                raise ModelError("tokenizer decoder Strip is malformed")
            if stop != 0:
                raise ModelError("tokenizer decoder Strip of trailing characters cannot stream")
            plan["strip"], stage = (content, start), 3
        else:
            raise ModelError(
                f"tokenizer decoder step {kind!r} (in this position) is not supported; "
                "supported: ByteLevel, or Replace/Metaspace, ByteFallback, Fuse, Strip"
            )
    plan["replaces"] = tuple(plan["replaces"])
    return _Plan(**plan)


class TextDecoder:
    """The answer text of token ids, exactly as `tokenizers` decodes them with
    skip_special_tokens=True, computed from a per-id table so that it can also stream."""

    def __init__(
        self, decoder_spec: dict[str, Any] | None, tokens: Sequence[str | None], skip: Iterable[int]
    ) -> None:
        """`tokens[i]` is id i's token string (None: no such id); ids in `skip` decode to
        nothing (special tokens)."""
        self.plan = _plan(decoder_spec)
        skipped = set(skip)
        chars = byte_level_alphabet()
        self._first: dict[int, tuple[int, bytes | str]] = {}
        table: list[tuple[int, bytes | str] | None] = []
        for i, tok in enumerate(tokens):
            if tok is None or i in skipped:
                table.append(None)
            elif self.plan.byte_level:
                if all(c in chars for c in tok):
                    table.append((_BYTE, bytes(chars[c] for c in tok)))
                else:
                    table.append((_BYTE, tok.encode("utf-8")))
            else:
                table.append(self._piece(tok, first=False))
                rep = self.plan.metaspace
                if self.plan.metaspace_first_strip and rep is not None and rep in tok:
                    self._first[i] = self._piece(tok, first=True)
        self._table = table

    def _piece(self, tok: str, first: bool) -> tuple[int, bytes | str]:
        p = self.plan
        if p.metaspace is not None:
            tok = tok.replace(p.metaspace, "" if first and p.metaspace_first_strip else " ")
        for old, new in p.replaces:
            tok = tok.replace(old, new)
        value = _byte_value(tok) if p.byte_fallback else None
        return (_BYTE, bytes([value])) if value is not None else (_TEXT, tok)

    def piece(self, token: int, first: bool) -> tuple[int, bytes | str] | None:
        if not 0 <= token < len(self._table):
            return None
        entry = self._table[token]
        if entry is not None and first:
            return self._first.get(token, entry)
        return entry

    def stream(self) -> IncrementalDecoder:
        return IncrementalDecoder(self)

    def decode(self, ids: Iterable[int]) -> str:
        dec = IncrementalDecoder(self)
        return "".join([*(dec.push(i) for i in ids), dec.flush()])


class IncrementalDecoder:
    """The text of the tokens pushed so far, released as soon as no later token can change it.
    The concatenation of everything returned (push... flush) equals TextDecoder.decode."""

    def __init__(self, table: TextDecoder) -> None:
        self._t = table
        self._byte_level = table.plan.byte_level
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._run = bytearray()  # ByteFallback: the current run of byte tokens
        self._first = True  # no token that decodes to something seen yet
        strip = table.plan.strip
        self._strip_char, self._strip_left = strip if strip else ("", 0)

    def push(self, token: int) -> str:
        piece = self._t.piece(token, self._first)
        if piece is None:
            return ""
        self._first = False
        kind, value = piece
        if self._byte_level:
            assert isinstance(value, bytes)
            return self._out(self._utf8.decode(value))
        if kind == _BYTE:
            assert isinstance(value, bytes)
            self._run += value
            return ""
        assert isinstance(value, str)
        return self._out(self._end_run() + value)

    def flush(self) -> str:
        if self._byte_level:
            return self._out(self._utf8.decode(b"", final=True))
        return self._out(self._end_run())

    def _end_run(self) -> str:
        """ByteFallback: a run is its UTF-8 text, or one U+FFFD per byte if any is invalid."""
        if not self._run:
            return ""
        try:
            text = self._run.decode("utf-8")
        except UnicodeDecodeError:
            text = "\ufffd" * len(self._run)
        self._run.clear()
        return text

    def _out(self, text: str) -> str:
        while self._strip_left and text:
            if text[0] != self._strip_char:
                self._strip_left = 0
                break
            text = text[1:]
            self._strip_left -= 1
        return text


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
