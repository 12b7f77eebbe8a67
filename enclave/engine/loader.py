"""Load a model directory in the Hugging Face layout, safely.

Order matters: the directory's digest is checked BEFORE any weight is read (the receipt's model
digest relies on it); weights come only from safetensors (pickle-based formats are refused, never
unpickled); every tensor's name and shape must match the architecture exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from enclave.engine.model import ModelArgs, Transformer
from enclave.errors import ModelError
from verify.digests import model_dir_sha256

CONFIG_BYTES_MAX = 1 << 20
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        if path.stat().st_size > CONFIG_BYTES_MAX:
            raise ModelError(f"{what} is larger than {CONFIG_BYTES_MAX} bytes")
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{what} cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{what} is not a JSON object")
    return data


def weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        weight_map = read_json(index, "model.safetensors.index.json").get("weight_map", {})
        names = sorted(set(weight_map.values()))
        files = [model_dir / n for n in names]
        if any(f.parent != model_dir or f.suffix != ".safetensors" for f in files):
            raise ModelError("the safetensors index names files outside the model directory")
        return files
    single = model_dir / "model.safetensors"
    if single.exists():
        return [single]
    if any(model_dir.glob(f"*{s}") for s in _PICKLE_SUFFIXES):
        raise ModelError("only pickle-format weights found; ccgw loads safetensors only")
    raise ModelError(f"no model.safetensors in {model_dir}")


def load_model(
    model_dir: Path, expected_sha256: bytes | None, device: str, dtype: torch.dtype
) -> tuple[Transformer, bytes, dict[str, Any]]:
    digest = model_dir_sha256(model_dir)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelError(
            f"model digest {digest.hex()[:16]}… does not match the expected "
            f"{expected_sha256.hex()[:16]}…; refusing to load these weights"
        )
    config = read_json(model_dir / "config.json", "config.json")
    args = ModelArgs.from_config(config)
    gen_cfg = model_dir / "generation_config.json"
    if gen_cfg.exists():
        eos = read_json(gen_cfg, "generation_config.json").get("eos_token_id")
        if eos is not None:
            ids = tuple(eos) if isinstance(eos, list) else (eos,)
            args = ModelArgs(**{**args.__dict__, "eos_token_ids": tuple(int(i) for i in ids)})
    with torch.device("meta"):
        model = Transformer(args)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if args.tie_embeddings:
        expected.pop("lm_head.weight")
    state: dict[str, torch.Tensor] = {}
    for f in weight_files(model_dir):
        with safe_open(str(f), framework="pt", device="cpu") as st:
            for name in st.keys():  # noqa: SIM118 - safe_open has keys(), not __iter__
                if name.endswith("rotary_emb.inv_freq"):
                    continue
                if name not in expected:
                    raise ModelError(f"unexpected tensor {name!r} for {args.family}")
                t = st.get_tensor(name)
                if tuple(t.shape) != expected[name]:
                    raise ModelError(
                        f"tensor {name!r} has shape {tuple(t.shape)}, expected {expected[name]}"
                    )
                state[name] = t.to(device=device, dtype=dtype)
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ModelError(f"weights are missing {len(missing)} tensors, e.g. {missing[:3]}")
    if args.tie_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, assign=True)
    model.eval()
    return model, digest, config
