"""Load a model directory in the Hugging Face layout, safely.

Order matters: the directory's digest (verify.digests, the value receipts and evidence name) is
checked BEFORE any config or weight is parsed, and every file is then read ONCE and parsed from
those bytes only after their SHA-256 matched the one that went into the digest. A host that
rewrites the directory between the digest and the load (files on host-controlled storage) is
caught, not believed.

Weights come only from safetensors: pickle-based formats are never unpickled (ignored when
safetensors are present, refused otherwise). Every tensor's name and shape must match the
architecture exactly, checked from the safetensors header before any tensor is materialised;
missing tensors are an error, so a config and weights that disagree never make a model.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from ccgw.enclave.engine.config import ModelArgs, token_ids
from ccgw.enclave.engine.model import Transformer
from ccgw.enclave.errors import ModelError
from ccgw.verify.digests import model_dir_manifest
from ccgw.verify.errors import VerifyError

CONFIG_BYTES_MAX = 1 << 20
TOKENIZER_BYTES_MAX = 64 << 20
SAFETENSORS_HEADER_BYTES_MAX = 100 << 20  # the format's own limit
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

log = structlog.get_logger("enclave.engine.loader")


class ModelDir:
    """A model directory checked against its digest, whose files are read once each."""

    def __init__(self, path: Path, expected_sha256: bytes | None) -> None:
        try:
            digest, files = model_dir_manifest(path)
        except (VerifyError, OSError) as exc:
            raise ModelError(f"model directory cannot be digested: {exc}") from exc
        if expected_sha256 is not None and not hmac.compare_digest(digest, expected_sha256):
            raise ModelError(
                f"model digest {digest.hex()[:16]}… does not match the expected "
                f"{expected_sha256.hex()[:16]}…; refusing to load these weights"
            )
        self.path, self.sha256, self._files = path, digest, files

    def has(self, name: str) -> bool:
        return name in self._files

    def read(self, name: str, bytes_max: int | None = None) -> bytes:
        """The file's bytes, as digested; ModelError if absent, too large or changed since."""
        if name not in self._files:
            raise ModelError(f"{name} is not in the model directory")
        try:
            with (self.path / name).open("rb") as f:
                data = f.read() if bytes_max is None else f.read(bytes_max + 1)
        except OSError as exc:
            raise ModelError(f"{name} cannot be read: {exc}") from exc
        if bytes_max is not None and len(data) > bytes_max:
            raise ModelError(f"{name} is larger than {bytes_max} bytes")
        if not hmac.compare_digest(hashlib.sha256(data).digest(), self._files[name]):
            raise ModelError(f"{name} changed after the model digest was taken; refusing it")
        return data

    def json(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads(self.read(name, CONFIG_BYTES_MAX).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{name} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ModelError(f"{name} is not a JSON object")
        return data

    def weight_files(self) -> list[str]:
        pickles = sorted(n for n in self._files if n.endswith(PICKLE_SUFFIXES))
        if self.has("model.safetensors.index.json"):
            weight_map = self.json("model.safetensors.index.json").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ModelError("model.safetensors.index.json has no weight_map")
            names = sorted({str(v) for v in weight_map.values()})
            if any("/" in n or not n.endswith(".safetensors") or not self.has(n) for n in names):
                raise ModelError(
                    "the safetensors index names files outside the model directory or missing"
                )
        elif self.has("model.safetensors"):
            names = ["model.safetensors"]
        elif pickles:
            raise ModelError(
                f"only pickle-format weights found ({pickles[0]}); ccgw loads safetensors only"
            )
        else:
            raise ModelError(f"no model.safetensors in {self.path.name}")
        if pickles:
            log.warning("pickle_files_ignored", count=len(pickles))
        return names

    def state(
        self,
        expected: dict[str, tuple[int, ...]],
        *,
        device: torch.device,
        dtype: torch.dtype,
        rename: Callable[[str], str | None] = lambda name: name,
    ) -> dict[str, torch.Tensor]:
        """Every expected tensor, shape-checked, on `device` in `dtype`. `rename` maps a
        checkpoint name to ours, or None for tensors known to be unused (e.g. rotary inv_freq)."""
        state: dict[str, torch.Tensor] = {}
        for name in self.weight_files():
            data = self.read(name)
            wanted: dict[str, str] = {}
            for tensor, shape in _header_shapes(data, name).items():
                key = rename(tensor)
                if key is None:
                    continue
                if key not in expected:
                    raise ModelError(f"unexpected tensor {tensor!r} in {name}")
                if key in state or key in wanted.values():
                    raise ModelError(f"tensor {tensor!r} appears twice")
                if shape != expected[key]:
                    raise ModelError(
                        f"tensor {tensor!r} has shape {shape}, expected {expected[key]}"
                    )
                wanted[tensor] = key
            try:
                tensors = load_safetensors(data)
            except SafetensorError as exc:
                raise ModelError(f"{name} is not a readable safetensors file: {exc}") from exc
            del data
            for tensor, key in wanted.items():
                state[key] = tensors.pop(tensor).to(device=device, dtype=dtype)
        missing = sorted(set(expected) - set(state))
        if missing:
            raise ModelError(f"weights are missing {len(missing)} tensors, e.g. {missing[:3]}")
        return state


def _header_shapes(data: bytes, name: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header (8-byte little-endian length + JSON),
    so names and shapes are refused before anything is materialised."""
    bad = ModelError(f"{name} is not a readable safetensors file")
    if len(data) < 8:
        raise bad
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(SAFETENSORS_HEADER_BYTES_MAX, len(data) - 8):
        raise bad
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad from exc
    if not isinstance(header, dict):
        raise bad
    shapes: dict[str, tuple[int, ...]] = {}
    for tensor, info in header.items():
        if tensor == "__metadata__":
            continue
        shape = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise bad
        shapes[tensor] = tuple(shape)
    return shapes


def _decoder_name(name: str) -> str | None:
    return None if name.endswith("rotary_emb.inv_freq") else name


def load_model(
    model: ModelDir | Path, expected_sha256: bytes | None, device: str, dtype: torch.dtype
) -> tuple[Transformer, bytes]:
    """Digest check, then config, then weights: a ready (eval-mode) decoder and its digest."""
    md = model if isinstance(model, ModelDir) else ModelDir(Path(model), expected_sha256)
    args = ModelArgs.from_config(md.json("config.json"))
    if md.has("generation_config.json"):
        args = args.with_eos(token_ids(md.json("generation_config.json").get("eos_token_id")))
    with torch.device("meta"):
        decoder = Transformer(args)
    expected = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    rename = _decoder_name
    if args.tie_embeddings:
        expected.pop("lm_head.weight")

        # transformers ties lm_head to the embeddings even when a checkpoint also stores it.
        def rename(name: str) -> str | None:
            return None if name == "lm_head.weight" else _decoder_name(name)

    state = md.state(expected, device=torch.device(device), dtype=dtype, rename=rename)
    if args.tie_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    decoder.load_state_dict(state, assign=True)
    decoder.eval()
    return decoder, md.sha256
