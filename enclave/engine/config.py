"""ModelArgs: the one place that reads a decoder's config.json.

config.json comes from the model directory, i.e. from whoever packaged the weights, so every field
is converted and bounded here and anything this engine cannot run faithfully (an unknown
architecture, a RoPE variant we do not implement, activations other than SiLU) is a ModelError
that names the field, never a model that silently computes something else.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ccgw.enclave.errors import ModelError

SUPPORTED_ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
}
ROPE_TYPES = ("default", "linear", "dynamic", "llama3")

# Bounds on what a config may ask for (a hostile config.json must not make us allocate the moon).
VOCAB_SIZE_MAX = 1 << 20
HIDDEN_SIZE_MAX = 1 << 15
LAYERS_MAX = 512
HEADS_MAX = 1024


@dataclass(frozen=True)
class RopeArgs:
    """Rotary embedding parameters (HF `rope_scaling` / `rope_parameters`, normalised)."""

    theta: float = 10000.0
    kind: str = "default"  # one of ROPE_TYPES
    factor: float = 1.0
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    original_max_position: int = 8192  # llama3 (and dynamic: the trained context)


@dataclass(frozen=True)
class ModelArgs:
    family: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position: int
    rms_norm_eps: float
    rope: RopeArgs
    tie_embeddings: bool
    attention_bias: bool
    mlp_bias: bool = False
    # Per layer: attend only to the last `window` positions (Mistral / Qwen2 sliding window);
    # None = full causal attention. Length num_layers.
    sliding_windows: tuple[int | None, ...] = field(default=())
    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None

    def with_eos(self, extra: tuple[int, ...]) -> ModelArgs:
        merged = tuple(dict.fromkeys((*self.eos_token_ids, *extra)))
        return replace(self, eos_token_ids=merged)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> ModelArgs:
        archs = cfg.get("architectures") or []
        family = next(
            (SUPPORTED_ARCHITECTURES[a] for a in archs if a in SUPPORTED_ARCHITECTURES), None
        )
        if family is None:
            raise ModelError(
                f"unsupported architecture {archs!r}; supported: {sorted(SUPPORTED_ARCHITECTURES)}"
            )
        try:
            return _parse(cfg, family)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"config.json is missing or has a bad field: {exc!r}") from exc


def _bounded(cfg: dict[str, Any], key: str, hi: int, default: int | None = None) -> int:
    raw = cfg.get(key, default) if default is not None else cfg[key]
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw <= hi:
        raise ModelError(f"config.json field {key!r} must be an integer in 1..{hi}, got {raw!r}")
    return raw


def _fraction(value: object, what: str) -> float:
    x = float(value)  # type: ignore[arg-type]  # TypeError/ValueError become ModelError above
    if not 0 < x < 1:
        raise ModelError(f"{what} must be in (0, 1), got {value!r}")
    return x


def _positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 1 << 24:
        raise ModelError(f"{what} must be an integer in 1..{1 << 24}, got {value!r}")
    return value


def token_ids(value: object) -> tuple[int, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items):
        raise ModelError(f"token ids must be non-negative integers, got {value!r}")
    return tuple(items)


def _parse(cfg: dict[str, Any], family: str) -> ModelArgs:
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ModelError(f"hidden_act {act!r} is not supported (only 'silu')")
    hidden = _bounded(cfg, "hidden_size", HIDDEN_SIZE_MAX)
    heads = _bounded(cfg, "num_attention_heads", HEADS_MAX)
    kv_heads = _bounded(cfg, "num_key_value_heads", HEADS_MAX, default=heads)
    if heads % kv_heads:
        raise ModelError(f"num_attention_heads {heads} is not a multiple of kv heads {kv_heads}")
    head_dim = cfg.get("head_dim") or hidden // heads
    if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
        raise ModelError(f"head_dim must be a positive even integer, got {head_dim!r}")
    layers = _bounded(cfg, "num_hidden_layers", LAYERS_MAX)
    return ModelArgs(
        family=family,
        vocab_size=_bounded(cfg, "vocab_size", VOCAB_SIZE_MAX),
        hidden_size=hidden,
        intermediate_size=_bounded(cfg, "intermediate_size", 8 * HIDDEN_SIZE_MAX),
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        max_position=_bounded(cfg, "max_position_embeddings", 1 << 24, default=2048),
        rms_norm_eps=_fraction(cfg.get("rms_norm_eps", 1e-6), "rms_norm_eps"),
        rope=_rope(cfg),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        attention_bias=bool(cfg.get("attention_bias", family == "qwen2")),
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        sliding_windows=_windows(cfg, family, layers),
        eos_token_ids=token_ids(cfg.get("eos_token_id")),
        bos_token_id=(token_ids(cfg.get("bos_token_id")) or (None,))[0],
    )


def _rope(cfg: dict[str, Any]) -> RopeArgs:
    """transformers 4.x writes `rope_theta` + `rope_scaling`; 5.x writes `rope_parameters`."""
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise ModelError("rope_scaling / rope_parameters must be a JSON object")
    theta = float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))
    if not 1.0 < theta < 1e12:
        raise ModelError(f"rope_theta must be in (1, 1e12), got {theta!r}")
    kind = params.get("rope_type") or params.get("type") or "default"
    if kind not in ROPE_TYPES:
        raise ModelError(f"rope type {kind!r} is not supported; supported: {list(ROPE_TYPES)}")
    if kind == "default":
        return RopeArgs(theta=theta)
    factor = float(params["factor"])
    if not 1.0 <= factor <= 1024.0:
        raise ModelError(f"rope scaling factor must be within 1..1024, got {factor}")
    original = params.get("original_max_position_embeddings") or cfg.get(
        "max_position_embeddings", 2048
    )
    return RopeArgs(
        theta=theta,
        kind=kind,
        factor=factor,
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        original_max_position=_positive(original, "original_max_position_embeddings"),
    )


def _windows(cfg: dict[str, Any], family: str, layers: int) -> tuple[int | None, ...]:
    """Sliding-window attention per layer, following transformers' rules for each family."""
    default = 4096 if family in ("mistral", "qwen2") else None  # transformers' defaults
    window = cfg.get("sliding_window", default)
    if family == "qwen2" and not cfg.get("use_sliding_window", False):
        window = None
    if family == "llama":
        window = None
    if window is None:
        return (None,) * layers
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ModelError(f"sliding_window must be a positive integer, got {window!r}")
    types = cfg.get("layer_types")
    if types is not None:
        if not isinstance(types, list) or len(types) != layers:
            raise ModelError("layer_types must list one attention type per layer")
        return tuple(window if t == "sliding_attention" else None for t in types)
    if family == "qwen2":
        first = int(cfg.get("max_window_layers", layers))
        return tuple(window if i >= first else None for i in range(layers))
    return (window,) * layers
