"""Write small GGUF files for the importer's tests, the way llama.cpp's converter lays them out
(Q/K rows permuted for its RoPE kernel, GGUF dimension order, tokenizer in the metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from tokenizers import Tokenizer

from ccgw.enclave.engine.tiny import CHAT_TEMPLATE

_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf: str) -> str | None:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    if parts[:2] == ["model", "layers"]:
        return f"blk.{parts[2]}.{_NAMES['.'.join(parts[3:])]}"
    return None


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's row order for Q and K: each head's two rotary halves interleaved."""
    out, inp = w.shape
    return w.reshape(heads, 2, out // heads // 2, inp).swapaxes(1, 2).reshape(out, inp)


def write_gguf(
    path: Path,
    state: dict[str, torch.Tensor],
    cfg: dict[str, Any],
    tok: Tokenizer,
    qtype: str = "F32",
    tie: bool = True,
) -> Path:
    """A Llama GGUF of `state` (HF names) with 2-D weights stored as `qtype`."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", cfg["num_hidden_layers"])
    w.add_uint32("llama.context_length", cfg["max_position_embeddings"])
    w.add_uint32("llama.embedding_length", cfg["hidden_size"])
    w.add_uint32("llama.feed_forward_length", cfg["intermediate_size"])
    w.add_uint32("llama.attention.head_count", cfg["num_attention_heads"])
    w.add_uint32("llama.attention.head_count_kv", cfg["num_key_value_heads"])
    w.add_float32("llama.rope.freq_base", cfg["rope_theta"])
    w.add_float32("llama.attention.layer_norm_rms_epsilon", cfg["rms_norm_eps"])
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "default")
    vocab = tok.get_vocab(with_added_tokens=True)
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", [3 if t in special else 1 for t in tokens])
    w.add_array("tokenizer.ggml.merges", ["Ġ t"] if "Ġt" in vocab else [])
    w.add_uint32("tokenizer.ggml.bos_token_id", cfg["bos_token_id"])
    w.add_uint32("tokenizer.ggml.eos_token_id", cfg["eos_token_id"])
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_string("tokenizer.chat_template", CHAT_TEMPLATE)
    qt = gguf.GGMLQuantizationType[qtype]
    for hf, t in state.items():
        name = gguf_name(hf)
        if name is None or (tie and name == "output.weight"):
            continue
        a = t.detach().float().numpy()
        if name.endswith("attn_q.weight"):
            a = permute(a, cfg["num_attention_heads"])
        elif name.endswith("attn_k.weight"):
            a = permute(a, cfg["num_key_value_heads"])
        if a.ndim == 1 or qtype == "F32":
            w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))
        else:
            w.add_tensor(name, gguf.quants.quantize(a, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
