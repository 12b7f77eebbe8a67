"""`ccgw model import` / `ccgw model digest`: GGUF → the HF folder the engine loads.

What would break if the importer were wrong:
- weights: an F32 GGUF of the tiny model imports to EXACTLY the original tensors (so the Q/K row
  permutation is undone, names and tying are right); quantized types come back within their
  quantization error; K-quants (which the gguf package cannot write) match transformers'
  independent dequantizer on random blocks;
- the engine loads the folder pinned by the printed digest and the tokenizer round-trips;
- hostile files (truncated anywhere, absurd counts, shapes or strings, unknown tensor types) fail
  with one ModelImportError before any work, and memory stays near one tensor.
"""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ccgw.enclave.engine.loader import ModelDir, load_model
from ccgw.enclave.engine.tiny import byte_tokenizer, tiny_config, write_tiny_model
from ccgw.enclave.engine.tokenizer import Tokenizer
from ccgw.modelimport import ModelImportError, import_gguf
from ccgw.modelimport import config as lim
from ccgw.modelimport.errors import ImportLimitExceeded, MalformedGguf, UnsupportedGguf
from ccgw.verify.digests import model_dir_manifest
from tests.support.cli import run_main
from tests.support.gguf_files import permute, write_gguf


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    d = write_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen", family="qwen2")
    return d, load_file(str(d / "model.safetensors"))


def cfg() -> dict[str, object]:
    return tiny_config("llama", byte_tokenizer().get_vocab_size())


def gguf_of(
    tmp: Path, state: dict[str, torch.Tensor], qtype: str = "F32", tie: bool = True
) -> Path:
    return write_gguf(tmp / f"m-{qtype}.gguf", state, cfg(), byte_tokenizer(), qtype, tie)


def llama_state(tiny: tuple[Path, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tiny qwen2 weights without its biases: a valid tied Llama."""
    return {k: v for k, v in tiny[1].items() if not k.endswith(".bias")}


def test_f32_import_is_exact_and_the_engine_loads_it(tiny, tmp_path: Path) -> None:
    state = llama_state(tiny)
    out = import_gguf(gguf_of(tmp_path, state), tmp_path / "out")
    assert out.sha256 == model_dir_manifest(tmp_path / "out")[0]
    got = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert set(got) == set(state)
    for k, v in state.items():
        assert torch.equal(got[k], v.float()), k  # exact: permutation undone, nothing rescaled
    c = json.loads((tmp_path / "out" / "config.json").read_text())
    assert c["tie_word_embeddings"] is True and c["num_key_value_heads"] == 2
    assert c["rms_norm_eps"] == 1e-6  # the float32 in the file, spelled as written
    model, digest = load_model(tmp_path / "out", out.sha256, "cpu", torch.float32)
    assert digest == out.sha256 and model.args.family == "llama"
    tok = Tokenizer(ModelDir(tmp_path / "out", out.sha256))
    text = "Paris, é 🙂!"
    ids = tok.encode(text, add_special=True)
    assert ids[0] == 256 and tok.decode(ids) == text  # add_bos_token from the file
    assert tok.render_chat((("user", "hi"),)) == "<s><|user|>\nhi\n<|assistant|>\n"


def test_the_permutation_is_not_a_no_op(tiny) -> None:
    q = llama_state(tiny)["model.layers.0.self_attn.q_proj.weight"].numpy()
    assert not np.array_equal(permute(q, 4), q)


@pytest.mark.parametrize(
    ("qtype", "tol"),
    [
        ("F16", 2e-3),
        ("BF16", 1e-2),
        ("Q8_0", 0.02),
        ("Q5_1", 0.1),
        ("Q5_0", 0.15),
        ("Q4_1", 0.2),
        ("Q4_0", 0.3),
    ],
)
def test_quantized_types_come_back_within_their_error(
    tiny, tmp_path: Path, qtype: str, tol: float
) -> None:
    state = llama_state(tiny)
    state["lm_head.weight"] = state["model.embed_tokens.weight"].flip(0).contiguous()
    import_gguf(gguf_of(tmp_path, state, qtype, tie=False), tmp_path / "out")
    got = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert "lm_head.weight" in got  # untied: the file has output.weight
    for k, v in state.items():
        scale = float(v.abs().max())
        assert float((got[k] - v).abs().max()) <= tol * max(scale, 1e-6), (k, qtype)


@pytest.mark.parametrize("qtype", ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"])
def test_k_quants_match_an_independent_dequantizer(qtype: str) -> None:
    """gguf cannot write K-quants, so random blocks (with sane f16 scales) are dequantized by the
    importer's path and by transformers' own implementation."""
    from transformers.integrations.gguf.dequant import dequantize as hf_dequantize

    from ccgw.modelimport.gguf_llama import _loader

    qt = gguf.GGMLQuantizationType[qtype]
    block, nbytes = gguf.GGML_QUANT_SIZES[qt]
    rows, cols = 4, 512
    rng = np.random.default_rng(0)
    # random bytes, with every byte masked so that any f16 scale in it is finite and below 1
    raw = rng.integers(0, 256, size=(rows, cols // block * nbytes), dtype=np.uint8) & 0x3B

    class T:
        name, tensor_type, data = "t", qt, raw

    ours = _loader(T, (rows, cols), None)()
    ref = hf_dequantize(torch.from_numpy(raw.reshape(-1)), int(qt)).reshape(rows, cols)
    assert np.allclose(ours, ref.numpy(), rtol=1e-3, atol=1e-3)


# -- hostile files ---------------------------------------------------------------------------


def header(n_tensors: int = 0, n_kv: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


def gstr(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def tensor_info(name: bytes, dims: list[int], ttype: int, offset: int = 0) -> bytes:
    return (
        gstr(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", ttype, offset)
    )


def refused(tmp_path: Path, data: bytes, kind: type[ModelImportError], match: str) -> None:
    src = tmp_path / "bad.gguf"
    src.write_bytes(data)
    with pytest.raises(kind, match=match):
        import_gguf(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial")]


def test_truncated_anywhere_is_one_clear_error(tiny, tmp_path: Path) -> None:
    whole = gguf_of(tmp_path, llama_state(tiny)).read_bytes()
    for cut in (0, 3, 10, 23, 100, 5_000, len(whole) // 2, len(whole) - 1):
        src = tmp_path / f"cut{cut}.gguf"
        src.write_bytes(whole[:cut])
        with pytest.raises(ModelImportError, match=r"truncated|not a GGUF|outside the file"):
            import_gguf(src, tmp_path / f"out{cut}")


def test_absurd_counts_shapes_strings_and_types_are_refused(tmp_path: Path) -> None:
    refused(tmp_path, header(n_tensors=1 << 60), ImportLimitExceeded, "tensors")
    refused(tmp_path, header(n_kv=1 << 40), ImportLimitExceeded, "metadata entries")
    refused(
        tmp_path,
        header(n_kv=1) + gstr(b"k") + struct.pack("<I", 8) + struct.pack("<Q", 1 << 50),
        ImportLimitExceeded,
        "string",
    )
    arr = header(n_kv=1) + gstr(b"k") + struct.pack("<IIQ", 9, 8, 1 << 40)
    refused(tmp_path, arr, ImportLimitExceeded, "array")
    big = header(n_tensors=1) + tensor_info(b"w", [1 << 40, 1 << 40], 0)
    refused(tmp_path, big, ImportLimitExceeded, "elements")
    dims = header(n_tensors=1) + tensor_info(b"w", [1] * 9, 0)
    refused(tmp_path, dims, ImportLimitExceeded, "dimensions")
    unknown = header(n_tensors=1) + tensor_info(b"w", [32], 99)
    refused(tmp_path, unknown, UnsupportedGguf, "ggml type 99")
    outside = header(n_tensors=1) + tensor_info(b"w", [32, 32], 0, offset=1 << 30)
    outside += b"\0" * (-len(outside) % 32 + 64)
    refused(tmp_path, outside, MalformedGguf, "outside the file")
    refused(tmp_path, b"GGUF" + struct.pack("<I", 7) + b"\0" * 16, UnsupportedGguf, "version 7")
    refused(tmp_path, b"PK\x03\x04" + b"\0" * 40, MalformedGguf, "not a GGUF")


def test_wrong_architecture_shapes_and_missing_tensors(tiny, tmp_path: Path) -> None:
    state = llama_state(tiny)
    src = gguf_of(tmp_path, {k: v for k, v in state.items() if "layers.1.mlp.up" not in k})
    with pytest.raises(MalformedGguf, match="lacks 1 tensors"):
        import_gguf(src, tmp_path / "a")
    bad = dict(state)
    bad["model.norm.weight"] = torch.ones(32)
    with pytest.raises(MalformedGguf, match="shape"):
        import_gguf(gguf_of(tmp_path, bad), tmp_path / "b")


def test_existing_output_is_not_overwritten(tiny, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    with pytest.raises(ModelImportError, match="already exists"):
        import_gguf(gguf_of(tmp_path, llama_state(tiny)), tmp_path / "out")


def _import_peak(tmp_path: Path, layers: int) -> tuple[int, int, int]:
    overrides = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": layers}
    d = write_tiny_model(tmp_path / f"w{layers}", family="qwen2", overrides=overrides)
    state = {k: v for k, v in load_file(str(d / "model.safetensors")).items() if "bias" not in k}
    src = write_gguf(
        tmp_path / f"w{layers}.gguf", state, {**cfg(), **overrides}, byte_tokenizer(), "Q8_0"
    )
    tracemalloc.start()
    try:
        import_gguf(src, tmp_path / f"out{layers}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (
        peak,
        sum(v.numel() * 4 for v in state.values()),
        max(v.numel() * 4 for v in state.values()),
    )


def test_memory_does_not_grow_with_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tensors are dequantized and written one at a time: 4x the layers (12 MB more float32
    weights) must raise the peak allocation by a small fraction of that: what grows is the
    reader's per-tensor metadata (a few KiB per tensor, bounded by GGUF_TENSORS_MAX), not data."""
    import ccgw.verify.digests

    monkeypatch.setattr(ccgw.verify.digests, "_READ_BYTES", 64 << 10)  # a constant 8 MB buffer
    small, small_total, largest = _import_peak(tmp_path, 4)
    big, big_total, _ = _import_peak(tmp_path, 16)
    assert big_total - small_total > 40 * largest
    assert big - small < (big_total - small_total) / 10, (small, big, big_total - small_total)
    assert small < 8 * largest + (1 << 20)


def test_limits_are_named_with_units() -> None:
    names = [n for n in vars(lim) if n.isupper()]
    assert names and all(n.endswith(("_MAX",)) for n in names)


def test_cli_import_and_digest_print_the_pin(
    tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = gguf_of(tmp_path, llama_state(tiny))
    assert run_main(["model", "import", str(src), str(tmp_path / "m")]) == 0
    r = capsys.readouterr()
    digest = r.out.strip()
    assert digest == model_dir_manifest(tmp_path / "m")[0].hex()
    assert f"--model NAME={tmp_path / 'm'}@{digest}" in r.err
    assert run_main(["model", "digest", str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out.strip() == digest
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert run_main(["model", "import", str(bad), str(tmp_path / "n")]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
