"""Load a model directory in the Hugging Face layout, safely.

Order matters: the directory's digest (verify.digests.model_dir_sha256, the value receipts and
evidence name) is checked BEFORE any weight or config is parsed; weights come only from
safetensors (pickle-based formats are never unpickled: ignored when safetensors are present,
refused otherwise); every tensor's name and shape must match the architecture exactly, and
missing tensors are an error, so a config and weights that disagree never make a model.

Residual risk, written down: the digest is computed by reading the files, and the weights are read
again to load them. Whoever can rewrite the directory between the two reads could swap weights;
inside a CVM the model directory must therefore live on storage the host cannot change under us
(the CVM's encrypted or dm-verity root, or a tmpfs the weights were copied into).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
import torch
from safetensors import SafetensorError, safe_open

from enclave.engine.config import ModelArgs, token_ids
from enclave.engine.model import Transformer
from enclave.errors import ModelError
from verify.digests import model_dir_sha256
from verify.errors import VerifyError

CONFIG_BYTES_MAX = 1 << 20
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

log = structlog.get_logger("enclave.engine.loader")


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        if path.stat().st_size > CONFIG_BYTES_MAX:
            raise ModelError(f"{what} is larger than {CONFIG_BYTES_MAX} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{what} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{what} is not a JSON object")
    return data


def checked_digest(model_dir: Path, expected_sha256: bytes | None) -> bytes:
    """The directory digest; ModelError when it differs from the expected one."""
    try:
        digest = model_dir_sha256(model_dir)
    except VerifyError as exc:
        raise ModelError(f"model directory cannot be digested: {exc}") from exc
    if expected_sha256 is not None and not hmac.compare_digest(digest, expected_sha256):
        raise ModelError(
            f"model digest {digest.hex()[:16]}… does not match the expected "
            f"{expected_sha256.hex()[:16]}…; refusing to load these weights"
        )
    return digest


def weight_files(model_dir: Path) -> list[Path]:
    pickles = sorted(p.name for s in PICKLE_SUFFIXES for p in model_dir.glob(f"*{s}"))
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        weight_map = read_json(index, "model.safetensors.index.json").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelError("model.safetensors.index.json has no weight_map")
        names = sorted({str(v) for v in weight_map.values()})
        files = [model_dir / n for n in names]
        if any(f.parent != model_dir or f.suffix != ".safetensors" for f in files):
            raise ModelError("the safetensors index names files outside the model directory")
    elif (model_dir / "model.safetensors").exists():
        files = [model_dir / "model.safetensors"]
    elif pickles:
        raise ModelError(
            f"only pickle-format weights found ({pickles[0]}); ccgw loads safetensors only"
        )
    else:
        raise ModelError(f"no model.safetensors in {model_dir.name}")
    if pickles:
        log.warning("pickle_files_ignored", count=len(pickles))
    return files


def read_state(
    files: list[Path],
    expected: dict[str, tuple[int, ...]],
    *,
    device: torch.device,
    dtype: torch.dtype,
    rename: Callable[[str], str | None] = lambda name: name,
) -> dict[str, torch.Tensor]:
    """Every expected tensor, shape-checked, on `device` in `dtype`. `rename` maps a checkpoint
    name to ours, or None for tensors that are known to be unused (e.g. rotary inv_freq)."""
    state: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt", device="cpu") as st:
                for name in st.keys():  # noqa: SIM118 - safe_open has keys(), not __iter__
                    key = rename(name)
                    if key is None:
                        continue
                    if key not in expected:
                        raise ModelError(f"unexpected tensor {name!r} in {f.name}")
                    if key in state:
                        raise ModelError(f"tensor {name!r} appears twice")
                    shape = tuple(st.get_slice(name).get_shape())
                    if shape != expected[key]:
                        raise ModelError(
                            f"tensor {name!r} has shape {shape}, expected {expected[key]}"
                        )
                    state[key] = st.get_tensor(name).to(device=device, dtype=dtype)
        except (OSError, SafetensorError) as exc:
            raise ModelError(f"{f.name} is not a readable safetensors file: {exc}") from exc
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ModelError(f"weights are missing {len(missing)} tensors, e.g. {missing[:3]}")
    return state


def _decoder_name(name: str) -> str | None:
    return None if name.endswith("rotary_emb.inv_freq") else name


def load_model(
    model_dir: Path, expected_sha256: bytes | None, device: str, dtype: torch.dtype
) -> tuple[Transformer, bytes]:
    """Digest check, then config, then weights: a ready (eval-mode) decoder and its digest."""
    digest = checked_digest(model_dir, expected_sha256)
    args = ModelArgs.from_config(read_json(model_dir / "config.json", "config.json"))
    gen_cfg = model_dir / "generation_config.json"
    if gen_cfg.exists():
        args = args.with_eos(
            token_ids(read_json(gen_cfg, "generation_config.json").get("eos_token_id"))
        )
    with torch.device("meta"):
        model = Transformer(args)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if args.tie_embeddings:
        expected.pop("lm_head.weight")
    rename = _decoder_name
    if args.tie_embeddings:
        # transformers ties lm_head to the embeddings even when a checkpoint also stores it.
        def rename(name: str) -> str | None:
            return None if name == "lm_head.weight" else _decoder_name(name)

    state = read_state(
        weight_files(model_dir), expected, device=torch.device(device), dtype=dtype, rename=rename
    )
    if args.tie_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, assign=True)
    model.eval()
    return model, digest
