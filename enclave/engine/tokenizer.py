"""Tokenizer (tokenizer.json via `tokenizers`) and the model's chat template (tokenizer_config.json),
rendered in a sandboxed Jinja environment: a template is data from the model directory, not code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as HfTokenizer

from enclave.engine.loader import read_json
from enclave.errors import ModelError, RequestRejected


class Tokenizer:
    def __init__(self, model_dir: Path) -> None:
        try:
            self._tok = HfTokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as exc:
            raise ModelError(f"tokenizer.json cannot be loaded: {exc}") from exc
        cfg_path = model_dir / "tokenizer_config.json"
        cfg: dict[str, Any] = (
            read_json(cfg_path, "tokenizer_config.json") if cfg_path.exists() else {}
        )
        self.bos_token = _token_text(cfg.get("bos_token"))
        self.eos_token = _token_text(cfg.get("eos_token"))
        self.add_bos = bool(cfg.get("add_bos_token", False))
        template = cfg.get("chat_template")
        self._template = None
        if isinstance(template, str):
            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise
            self._template = env.from_string(template)

    def encode(self, text: str, add_special: bool = True) -> list[int]:
        ids: list[int] = self._tok.encode(text, add_special_tokens=False).ids
        if add_special and self.add_bos and self.bos_token:
            bos = self._tok.token_to_id(self.bos_token)
            if bos is not None and (not ids or ids[0] != bos):
                ids = [bos, *ids]
        return ids

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))

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
            raise RequestRejected(f"chat template refused the messages: {exc}") from exc


def _token_text(value: object) -> str | None:
    if isinstance(value, dict):
        content = value.get("content")
        return content if isinstance(content, str) else None
    return value if isinstance(value, str) else None


def _raise(message: str) -> None:
    raise TemplateError(message)
