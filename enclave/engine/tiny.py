"""Write a tiny random-weight model in the full Hugging Face layout, for the demo and the tests.

    python -m enclave.engine.tiny OUT_DIR [--family llama|qwen2|mistral] [--seed N]

config.json, model.safetensors, tokenizer.json (byte-level BPE without merges: every byte is a
token, so any text round-trips), tokenizer_config.json (with a chat template), generation_config.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

from ccgw.enclave.engine.config import ModelArgs
from ccgw.enclave.engine.model import Transformer

SPECIALS = ("<s>", "</s>")
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}


def tiny_config(family: str, vocab_size: int) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "architectures": [_ARCH[family]],
        "model_type": family,
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": family == "qwen2",
        "bos_token_id": 256,
        "eos_token_id": 257,
        "torch_dtype": "float32",
    }
    if family == "llama":
        cfg["rope_scaling"] = {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 256,
        }
    return cfg


def byte_tokenizer() -> Tokenizer:
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIALS))
    bos = tok.token_to_id(SPECIALS[0])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIALS[0]} $A", pair=f"{SPECIALS[0]} $A $B", special_tokens=[(SPECIALS[0], bos)]
    )
    return tok


def write_tiny_model(
    out: Path, family: str = "llama", seed: int = 0, overrides: dict[str, Any] | None = None
) -> Path:
    """`overrides` replace config.json fields (e.g. a larger hidden_size for the benchmark)."""
    out.mkdir(parents=True, exist_ok=True)
    tok = byte_tokenizer()
    cfg = {**tiny_config(family, tok.get_vocab_size()), **(overrides or {})}
    torch.manual_seed(seed)
    model = Transformer(ModelArgs.from_config(cfg))
    with torch.no_grad():
        for p in model.parameters():
            # 0.5 at the tiny width (lively logits), shrinking as 1/sqrt(width) when wider
            std = 0.5 * min(1.0, (64 / cfg["hidden_size"]) ** 0.5) if p.dim() > 1 else 0.1
            p.normal_(0.0, std)
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.fill_(1.0)
        # Random weights emit random bytes; keep the demo readable by never scoring a token that is
        # not printable ASCII above zero (their output rows are zero, the others are random).
        head = (
            model.model.embed_tokens.weight if cfg["tie_word_embeddings"] else model.lm_head.weight
        )
        for i in range(tok.get_vocab_size()):
            text = tok.decode([i])
            if not (len(text) == 1 and (text.isalnum() or text in " .,!?'-") and text.isascii()):
                head[i].zero_()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if cfg["tie_word_embeddings"]:
        state.pop("lm_head.weight")
    save_file(state, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "add_bos_token": False,  # the post-processor adds it
                "chat_template": CHAT_TEMPLATE,
            },
            indent=2,
        )
    )
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": 257}))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("out", type=Path)
    p.add_argument("--family", choices=sorted(_ARCH), default="llama")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    write_tiny_model(a.out, a.family, a.seed)
    print(f"wrote a tiny {a.family} model to {a.out}")


if __name__ == "__main__":
    main()
