"""config.json and weight files come with the model, from whoever packaged it: whatever they
hold, loading fails with ModelError (naming the problem) or succeeds within bounds, never with
another exception."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccgw.enclave.engine import load_engine
from ccgw.enclave.engine.config import ModelArgs
from ccgw.enclave.errors import ModelError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)
FIELDS = [
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "num_hidden_layers",
    "intermediate_size",
    "vocab_size",
    "head_dim",
    "rope_scaling",
    "rope_parameters",
    "sliding_window",
    "layer_types",
    "eos_token_id",
    "bos_token_id",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
]
BASE = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vocab_size": 300,
}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4))
def test_any_config_is_parsed_or_refused_with_model_error(changes: dict[str, object]) -> None:
    try:
        args = ModelArgs.from_config({**BASE, **changes})
    except ModelError:
        return
    assert 0 < args.hidden_size <= 1 << 15 and 0 < args.num_layers <= 512
    assert args.num_heads % args.num_kv_heads == 0 and args.head_dim % 2 == 0
    assert len(args.sliding_windows) == args.num_layers
    assert 0 < args.rms_norm_eps < 1 and 1 < args.rope.theta < 1e12
    assert 1 <= args.rope.factor <= 1024 and args.rope.original_max_position > 0


def test_truncated_or_garbage_weights_are_a_model_error(tiny_dir: Path, tmp_path: Path) -> None:
    d = Path(shutil.copytree(tiny_dir, tmp_path / "truncated"))
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="safetensors"):
        load_engine(d, "t")
    (d / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match="safetensors"):
        load_engine(d, "t")
    (d / "config.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ModelError, match="not a JSON object"):
        load_engine(d, "t")
