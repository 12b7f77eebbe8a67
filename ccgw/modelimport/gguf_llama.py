"""GGUF (Llama architecture, byte-level BPE vocabulary) → the Hugging Face layout the engine loads.

What the file holds and what we write:
- metadata `llama.*` → config.json (LlamaForCausalLM; the output projection is tied to the
  embeddings when the file has no `output.weight`, as llama.cpp's converter leaves it);
- tensors → model.safetensors in float32, dequantized by the `gguf` package (llama.cpp's own
  reference code) one tensor at a time; Q and K projections get llama.cpp's row permutation undone
  (its converter interleaves each head's two rotary halves for its own RoPE kernel);
- `tokenizer.ggml.*` → tokenizer.json built with `tokenizers` (vocabulary, merges, the split rule
  llama.cpp names by `tokenizer.ggml.pre`, control tokens as special tokens) and
  tokenizer_config.json (special tokens, add_bos_token, the chat template), generation_config.json.
The output is written to a temporary folder next to DIR and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccgw.modelimport import config as lim
from ccgw.modelimport.errors import (
    ImportLimitExceeded,
    MalformedGguf,
    ModelImportError,
    UnsupportedGguf,
)
from ccgw.modelimport.scan import Header, scan

# tokenizer.ggml.pre → how text is split before BPE. llama.cpp's "smollm"/"starcoder" family
# splits every digit on its own, then applies GPT-2's rule (what the original tokenizer.json does).
_DIGITS_THEN_GPT2 = {"smollm", "starcoder", "refact", "codeshell"}
_GPT2 = {"gpt-2", "default", "gpt2"}
_CONTROL, _USER_DEFINED = 3, 4


@dataclass(frozen=True)
class ImportResult:
    path: Path
    sha256: bytes  # the directory digest a worker's --model NAME=DIR@SHA256 pins
    tensors: int
    parameters: int
    tensor_types: dict[str, int]  # GGUF tensor type → count


class _Meta:
    def __init__(self, reader: Any) -> None:
        self._fields = reader.fields

    def get(self, key: str, default: Any = None) -> Any:
        f = self._fields.get(key)
        if f is None:
            return default
        try:
            return f.contents()
        except Exception as exc:
            raise MalformedGguf(f"metadata {key!r} cannot be read: {exc}") from exc

    def need(self, key: str, kind: type) -> Any:
        v = self.get(key)
        if v is None:
            raise UnsupportedGguf(f"the file has no {key!r} metadata")
        if kind is int and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
            raise MalformedGguf(f"metadata {key!r} must be a positive integer, got {v!r}")
        if kind is float and not isinstance(v, int | float):
            raise MalformedGguf(f"metadata {key!r} must be a number, got {v!r}")
        return v


def import_gguf(src: Path, dst: Path) -> ImportResult:
    """Convert `src` into the new directory `dst` (which must not exist, or be empty)."""
    from ccgw.verify.digests import model_dir_manifest
    from ccgw.verify.errors import VerifyError

    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ModelImportError(f"{dst} already exists and is not an empty folder")
    header = scan(src)
    reader = _open(src)
    meta = _Meta(reader)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise UnsupportedGguf(f"architecture {arch!r} is not supported (supported: 'llama')")
    cfg = _config(meta, header)
    tensors = {t.name: t for t in reader.tensors}
    plan = _tensor_plan(cfg, tensors)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.partial-", dir=dst.parent))
    try:
        _write_safetensors(tmp / "model.safetensors", plan)
        _write_tokenizer(tmp, meta, cfg)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; the model is not a secret
        if dst.exists():
            dst.rmdir()
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        digest, _ = model_dir_manifest(dst)
    except (VerifyError, OSError) as exc:
        raise ModelImportError(f"the imported folder cannot be digested: {exc}") from exc
    params = sum(int(np.prod(shape)) for _, shape, _ in plan)
    types = Counter(t.type_name for t in header.tensors)
    return ImportResult(dst, digest, len(plan), params, dict(sorted(types.items())))


def _open(src: Path) -> Any:
    import gguf

    try:
        return gguf.GGUFReader(src, "r")
    except Exception as exc:
        raise MalformedGguf(f"{src.name} cannot be read as GGUF: {exc}") from exc


def _eps(value: float) -> float:
    """GGUF stores float32: 1e-5 reads back as 9.99999974e-06; keep the shortest spelling."""
    return float(str(np.float32(value)))


def _config(meta: _Meta, header: Header) -> dict[str, Any]:
    hidden = meta.need("llama.embedding_length", int)
    heads = meta.need("llama.attention.head_count", int)
    kv_heads = meta.get("llama.attention.head_count_kv", heads)
    head_dim = meta.get("llama.attention.key_length", hidden // heads)
    rot = meta.get("llama.rope.dimension_count", head_dim)
    if rot != head_dim:
        raise UnsupportedGguf(f"partial rotary embeddings ({rot} of {head_dim}) are not supported")
    tokens = meta.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens:
        raise UnsupportedGguf("the file has no tokenizer.ggml.tokens vocabulary")
    if len(tokens) > lim.VOCAB_TOKENS_MAX:
        raise ImportLimitExceeded(
            f"the vocabulary has {len(tokens)} tokens (limit {lim.VOCAB_TOKENS_MAX})"
        )
    names = {t.name for t in header.tensors}
    if "rope_freqs.weight" in names:
        raise UnsupportedGguf("per-frequency RoPE factors (rope_freqs) are not supported")
    scaling = meta.get("llama.rope.scaling.type", "none")
    rope: dict[str, Any] = {}
    if scaling == "linear":
        rope = {
            "rope_scaling": {
                "rope_type": "linear",
                "factor": meta.need("llama.rope.scaling.factor", float),
            }
        }
    elif scaling != "none":
        raise UnsupportedGguf(f"RoPE scaling {scaling!r} is not supported (supported: linear)")
    bos = meta.get("tokenizer.ggml.bos_token_id")
    eos = meta.get("tokenizer.ggml.eos_token_id")
    eot = meta.get("tokenizer.ggml.eot_token_id")
    for tid in (bos, eos, eot):
        if tid is not None and not (isinstance(tid, int) and 0 <= tid < len(tokens)):
            raise MalformedGguf(f"special token id {tid!r} is outside the vocabulary")
    eos_ids = [i for i in dict.fromkeys((eos, eot)) if i is not None]
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(meta.get("llama.vocab_size", len(tokens))),
        "hidden_size": hidden,
        "intermediate_size": meta.need("llama.feed_forward_length", int),
        "num_hidden_layers": meta.need("llama.block_count", int),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": meta.get("llama.context_length", 2048),
        "rms_norm_eps": _eps(meta.need("llama.attention.layer_norm_rms_epsilon", float)),
        "rope_theta": float(meta.get("llama.rope.freq_base", 10000.0)),
        **rope,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": "output.weight" not in names,
        "bos_token_id": bos,
        "eos_token_id": eos_ids[0] if len(eos_ids) == 1 else eos_ids,
        "torch_dtype": "float32",
    }


_LAYER_TENSORS = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}

Plan = list[tuple[str, tuple[int, ...], Callable[[], np.ndarray]]]


def _expected(cfg: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """GGUF name → (HF name, HF shape) for every tensor the model needs."""
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * cfg["head_dim"]
    shapes = {
        "attn_norm.weight": (h,),
        "ffn_norm.weight": (h,),
        "attn_q.weight": (q, h),
        "attn_k.weight": (kv, h),
        "attn_v.weight": (kv, h),
        "attn_output.weight": (h, q),
        "ffn_gate.weight": (inter, h),
        "ffn_up.weight": (inter, h),
        "ffn_down.weight": (h, inter),
    }
    out = {
        "token_embd.weight": ("model.embed_tokens.weight", (v, h)),
        "output_norm.weight": ("model.norm.weight", (h,)),
    }
    if not cfg["tie_word_embeddings"]:
        out["output.weight"] = ("lm_head.weight", (v, h))
    for i in range(cfg["num_hidden_layers"]):
        for g, hf in _LAYER_TENSORS.items():
            out[f"blk.{i}.{g}"] = (f"model.layers.{i}.{hf}", shapes[g])
    return out


def _tensor_plan(cfg: dict[str, Any], tensors: dict[str, Any]) -> Plan:
    expected = _expected(cfg)
    unknown = sorted(set(tensors) - set(expected))
    if unknown:
        raise UnsupportedGguf(f"unexpected tensor {unknown[0]!r} ({len(unknown)} unexpected)")
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise MalformedGguf(f"the file lacks {len(missing)} tensors, e.g. {missing[0]!r}")
    plan: Plan = []
    total = 0
    for gname, (hf, shape) in sorted(expected.items(), key=lambda kv: kv[1][0]):
        t = tensors[gname]
        got = tuple(int(d) for d in reversed(t.shape.tolist()))
        if got != shape:
            raise MalformedGguf(f"tensor {gname!r} has shape {got}, expected {shape}")
        total += 4 * int(np.prod(shape))
        heads = None
        if gname.endswith("attn_q.weight"):
            heads = cfg["num_attention_heads"]
        elif gname.endswith("attn_k.weight"):
            heads = cfg["num_key_value_heads"]
        plan.append((hf, shape, _loader(t, shape, heads)))
    if total > lim.MODEL_OUTPUT_BYTES_MAX:
        raise ImportLimitExceeded(
            f"the float32 model would be {total} bytes (limit {lim.MODEL_OUTPUT_BYTES_MAX} bytes)"
        )
    return plan


def _loader(t: Any, shape: tuple[int, ...], heads: int | None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from gguf.quants import dequantize

        try:
            w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
            w = w.reshape(shape)
        except Exception as exc:
            raise MalformedGguf(f"tensor {t.name!r} cannot be dequantized: {exc}") from exc
        if heads is not None:  # undo llama.cpp's interleaving of each head's rotary halves
            out, inp = shape
            if out % (2 * heads):
                raise MalformedGguf(
                    f"tensor {t.name!r}: {out} rows do not split into {heads} heads"
                )
            w = w.reshape(heads, out // heads // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)
        if not np.isfinite(w).all():
            raise MalformedGguf(f"tensor {t.name!r} holds NaN or infinite values")
        return np.ascontiguousarray(w, dtype="<f4")

    return load


def _write_safetensors(path: Path, plan: Plan) -> None:
    """The safetensors layout (8-byte header length, JSON header, raw little-endian data), written
    one tensor at a time so memory holds one dequantized tensor, not the model."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "source": "gguf"}}
    offset = 0
    for name, shape, _ in plan:
        n = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for _name, _shape, load in plan:
            f.write(load().tobytes())  # one tensor at a time


def _write_tokenizer(out: Path, meta: _Meta, cfg: dict[str, Any]) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise UnsupportedGguf(
            f"tokenizer model {kind!r} is not supported yet (supported: 'gpt2', byte-level BPE)"
        )
    pre = meta.get("tokenizer.ggml.pre", "default")
    split: Any
    if pre in _DIGITS_THEN_GPT2:
        split = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    elif pre in _GPT2:
        split = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        raise UnsupportedGguf(
            f"tokenizer pre-split {pre!r} is not supported "
            f"(supported: {sorted(_DIGITS_THEN_GPT2 | _GPT2)})"
        )
    tokens: list[str] = meta.get("tokenizer.ggml.tokens")
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    merges_raw = meta.get("tokenizer.ggml.merges") or []
    if not all(isinstance(t, str) for t in tokens) or len(types) != len(tokens):
        raise MalformedGguf("the vocabulary and its token types do not match")
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise MalformedGguf("the vocabulary lists a token twice")
    merges = []
    for m in merges_raw:
        parts = m.split(" ") if isinstance(m, str) else []
        if len(parts) != 2 or parts[0] + parts[1] not in vocab:
            raise MalformedGguf(f"bad merge rule {m!r}")
        merges.append((parts[0], parts[1]))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = split
    tok.decoder = decoders.ByteLevel()
    control = [
        AddedToken(t, special=True, normalized=False)
        for t, k in zip(tokens, types, strict=True)
        if k == _CONTROL
    ]
    user = [
        AddedToken(t, special=False, normalized=False)
        for t, k in zip(tokens, types, strict=True)
        if k == _USER_DEFINED
    ]
    tok.add_special_tokens(control)
    tok.add_tokens(user)
    if tok.get_vocab_size(with_added_tokens=True) != len(tokens):
        raise MalformedGguf("special tokens of the file are not in its vocabulary")
    tok.save(str(out / "tokenizer.json"))

    def name(key: str) -> str | None:
        tid = meta.get(key)
        return tokens[tid] if isinstance(tid, int) and 0 <= tid < len(tokens) else None

    tcfg: dict[str, Any] = {
        "bos_token": name("tokenizer.ggml.bos_token_id"),
        "eos_token": name("tokenizer.ggml.eos_token_id"),
        "unk_token": name("tokenizer.ggml.unknown_token_id"),
        "pad_token": name("tokenizer.ggml.padding_token_id"),
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    template = meta.get("tokenizer.chat_template")
    if isinstance(template, str):
        tcfg["chat_template"] = template
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2) + "\n")
    gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
