"""Tokenizer (tokenizer.json via `tokenizers`) and the model's chat template (tokenizer_config.json).

The chat template is Jinja from the model directory. It is rendered in jinja2's immutable sandbox
(no attribute access to Python internals, no mutation of what we pass in, bounded `range`), with
only the globals transformers' templates expect. Raw prompts get the special tokens the
tokenizer's post-processor adds (e.g. Llama 3's BOS), as transformers does; a rendered chat
already contains them, so it is encoded without.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as HfTokenizer

from ccgw.enclave.engine.detok import IncrementalDecoder, TextDecoder
from ccgw.enclave.engine.loader import TOKENIZER_BYTES_MAX, ModelDir
from ccgw.enclave.errors import ModelError, RequestRejected


class Tokenizer:
    def __init__(self, md: ModelDir) -> None:
        self._tok = load_tokenizer(md)
        self.text = text_decoder(self._tok)
        cfg: dict[str, Any] = (
            md.json("tokenizer_config.json") if md.has("tokenizer_config.json") else {}
        )
        self.bos_token = _token_text(cfg.get("bos_token"))
        self.eos_token = _token_text(cfg.get("eos_token"))
        self._add_bos = bool(cfg.get("add_bos_token", False))
        self._template = None
        template = cfg.get("chat_template")
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        if isinstance(template, str):
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise
            env.globals["strftime_now"] = _strftime_now
            try:
                self._template = env.from_string(template)
            except TemplateError as exc:
                raise ModelError(f"the chat template does not compile: {exc}") from exc

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        ids: list[int] = self._tok.encode(text, add_special_tokens=add_special).ids
        bos = self.token_id(self.bos_token)
        if add_special and self._add_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return ids

    def decode(self, ids: list[int]) -> str:
        """The answer text of `ids` (what the streamed deltas add up to)."""
        return self.text.decode(ids)

    def stream(self) -> IncrementalDecoder:
        return self.text.stream()

    def render_chat(self, messages: tuple[tuple[str, str], ...]) -> str:
        if self._template is None:
            raise RequestRejected("this model has no chat template; send a raw prompt")
        try:
            return str(
                self._template.render(
                    messages=[{"role": r, "content": c} for r, c in messages],
                    add_generation_prompt=True,
                    bos_token=self.bos_token or "",
                    eos_token=self.eos_token or "",
                )
            )
        except TemplateError as exc:
            raise RequestRejected(f"the chat template refused the messages: {exc}") from exc


def load_tokenizer(md: ModelDir) -> HfTokenizer:
    """tokenizer.json from the digest-checked bytes, without padding or truncation."""
    data = md.read("tokenizer.json", TOKENIZER_BYTES_MAX)
    try:
        tok = HfTokenizer.from_str(data.decode("utf-8"))
    except Exception as exc:  # tokenizers raises a bare Exception
        raise ModelError(f"tokenizer.json cannot be loaded: {exc}") from exc
    tok.no_padding()
    tok.no_truncation()
    return tok


def text_decoder(tok: HfTokenizer) -> TextDecoder:
    """The streaming equivalent of `tok.decode(ids, skip_special_tokens=True)`; ModelError for a
    decoder that cannot be streamed exactly."""
    spec = json.loads(tok.to_str())
    special = {
        int(t["id"])
        for t in spec.get("added_tokens") or []
        if isinstance(t, dict) and t.get("special") and isinstance(t.get("id"), int)
    }
    n = max(tok.get_vocab(with_added_tokens=True).values(), default=-1) + 1
    tokens = [tok.id_to_token(i) for i in range(n)]
    return TextDecoder(spec.get("decoder"), tokens, special)


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):
        content = value.get("content")
        return content if isinstance(content, str) else None
    return value if isinstance(value, str) else None


def _raise(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime(fmt)
