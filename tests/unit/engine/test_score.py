"""The scoring pass (enclave.engine.score): one teacher-forced pass agrees with what the engine
generated, reads a substituted token as such, and never disturbs live decoding."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ccgw.enclave.engine import EngineLimits, Finished, GenerationRequest, TextDelta, load_engine
from ccgw.enclave.engine.engine import Engine
from ccgw.verify.consistency import CONSISTENT, INCONSISTENT, Decoding, JobInput


async def _run(engine: Engine, req: GenerationRequest) -> tuple[str, Finished]:
    text, fin = [], None
    async for ev in engine.generate(req):
        if isinstance(ev, TextDelta):
            text.append(ev.text)
        else:
            fin = ev
    assert isinstance(fin, Finished)
    return "".join(text), fin


def _req(prompt: str, n: int = 16, **kw: object) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt,
        messages=None,
        max_new_tokens=n,
        max_input_tokens=256,
        **kw,  # type: ignore[arg-type]
    )


def _job(req: GenerationRequest) -> JobInput:
    d = Decoding.of(req.temperature, req.top_p, req.top_k, req.max_new_tokens, req.seed, req.stop)
    return JobInput(req.prompt, req.messages, req.stop, d)


def test_greedy_answer_scores_as_the_argmax_everywhere(tiny_dir: Path) -> None:
    async def go() -> None:
        engine = load_engine(tiny_dir, "t", limits=EngineLimits(batch_size_max=2))
        try:
            req = _req("The quick brown fox")
            answer, fin = await _run(engine, req)
            v, scored = await engine.score(_job(req), answer, fin.finish_reason, fin.output_tokens)
            assert v.status == CONSISTENT, v.reason
            assert len(scored.answer) == fin.output_tokens == 16
            for s in scored.answer:  # float32, same weights: the very same argmax
                assert s.rank == 0 and s.token == s.top_token
                assert s.top_logit - s.logit == pytest.approx(0.0, abs=1e-4)
            # one substituted character: that position, and no earlier one, is named
            swapped = answer[:5] + ("a" if answer[5] != "a" else "b") + answer[6:]
            v2, scored2 = await engine.score(
                _job(req), swapped, fin.finish_reason, fin.output_tokens
            )
            assert scored2.answer[5].rank > 0
            assert v2.status == INCONSISTENT and v2.position == 5
        finally:
            await engine.aclose()

    asyncio.run(go())


def test_scoring_next_to_live_decoding_changes_no_answer(tiny_dir: Path) -> None:
    async def go() -> None:
        engine = load_engine(tiny_dir, "t", limits=EngineLimits(batch_size_max=2))
        try:
            req = _req("Lorem ipsum", 24)
            alone, fin = await _run(engine, req)
            scores = [
                engine.score(_job(req), alone, fin.finish_reason, fin.output_tokens)
                for _ in range(4)
            ]
            together = await asyncio.gather(_run(engine, req), *scores)
            assert together[0][0] == alone
            assert all(v.status == CONSISTENT for v, _ in together[1:])  # type: ignore[union-attr]
        finally:
            await engine.aclose()

    asyncio.run(go())


def test_seeded_sampling_is_checked_against_the_draw(tiny_dir: Path) -> None:
    async def go() -> None:
        engine = load_engine(tiny_dir, "t")
        try:
            req = _req("Seeded", 20, temperature=1.0, seed=1234)
            answer, fin = await _run(engine, req)
            v, scored = await engine.score(_job(req), answer, fin.finish_reason, fin.output_tokens)
            assert v.status == CONSISTENT, v.reason
            for s in scored.answer:  # the exact draw lands in the claimed token's interval
                assert s.draw is not None and s.cum_lo is not None and s.cum_hi is not None
                assert s.cum_lo2 is not None and s.cum_hi2 is not None
                assert s.cum_lo2 - 1e-4 <= s.draw <= s.cum_hi2 + 1e-4
            # the same answer under another seed is not what that seed draws
            other = _job(_req("Seeded", 20, temperature=1.0, seed=99))
            v2, _ = await engine.score(other, answer, fin.finish_reason, fin.output_tokens)
            assert v2.status == INCONSISTENT and "seeded draw" in v2.reason
        finally:
            await engine.aclose()

    asyncio.run(go())


PARAMS: list[dict[str, object]] = [
    {},
    {"temperature": 0.8, "top_k": 5},
    {"temperature": 1.0, "top_p": 0.8},
    {"temperature": 1.0, "seed": 7},
    {"temperature": 0.7, "top_k": 8, "top_p": 0.9, "seed": 3},
]
PROMPTS = ("Hello there", "The rain in Spain", "0123456789", "Why is the sky blue? Because")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_honest_workers_never_raise_an_alarm_across_dtypes_and_batches(
    tiny_dir: Path, dtype: str
) -> None:
    """40 canaries per dtype (4 prompts x 5 parameter sets, alone and batched with 5 other jobs of
    mixed parameters), scored by a float32 verifier under the margin for the dtypes."""
    from ccgw.verify.consistency import tolerance_for

    async def go() -> None:
        worker = load_engine(tiny_dir, "w", dtype=dtype, limits=EngineLimits(batch_size_max=6))
        verifier = load_engine(tiny_dir, "v")
        tol = tolerance_for(worker.dtype, verifier.dtype)
        alarms: list[str] = []
        try:
            for batched in (False, True):
                for i, (prompt, p) in enumerate((pr, pa) for pr in PROMPTS for pa in PARAMS):
                    req = _req(prompt, 12, **p)
                    others = (
                        [
                            _run(worker, _req(f"other {j}", 12, **PARAMS[(i + j) % 5]))
                            for j in range(5)
                        ]
                        if batched
                        else []
                    )
                    runs = await asyncio.gather(_run(worker, req), *others)
                    answer, fin = runs[0]
                    v, _ = await verifier.score(
                        _job(req), answer, fin.finish_reason, fin.output_tokens, tol
                    )
                    if v.status == INCONSISTENT:
                        alarms.append(f"{prompt!r} {p} batched={batched}: {v.reason}")
        finally:
            await worker.aclose()
            await verifier.aclose()
        assert alarms == []

    asyncio.run(go())


def test_an_answer_cut_by_a_stop_sequence_is_consistent_and_a_shorter_one_is_not(
    tiny_dir: Path,
) -> None:
    async def go() -> None:
        engine = load_engine(tiny_dir, "t")
        try:
            free, _ = await _run(engine, _req("Stop me", 16))
            stop = free[6:8]  # two characters the model will write after six others
            req = _req("Stop me", 16, stop=(stop,))
            answer, fin = await _run(engine, req)
            assert fin.finish_reason == "stop" and answer == free[: free.index(stop)]
            v, scored = await engine.score(_job(req), answer, "stop", fin.output_tokens)
            assert v.status == CONSISTENT, v.reason
            assert "stop:0" in scored.ends
            # the same answer cut two tokens earlier, claiming the same stop: not where it stops
            short = answer[:-2]
            v2, _ = await engine.score(_job(req), short, "stop", fin.output_tokens - 2)
            assert v2.status == INCONSISTENT and v2.position == len(short)
        finally:
            await engine.aclose()

    asyncio.run(go())


def test_a_seeded_request_draws_the_same_tokens_next_to_a_filtered_one(tiny_dir: Path) -> None:
    """The sampler sorts a batch when any row is filtered; an unfiltered seeded row must still
    draw over vocabulary order, or its answer would depend on its neighbours (and a verifier could
    not reproduce the draw)."""

    async def go() -> None:
        engine = load_engine(tiny_dir, "t", limits=EngineLimits(batch_size_max=4))
        try:
            seeded = _req("Hi", 16, temperature=1.0, seed=5)
            filtered = _req("Yo", 16, temperature=1.0, top_k=3, seed=6)
            alone, _ = await _run(engine, seeded)
            together = await asyncio.gather(_run(engine, seeded), _run(engine, filtered))
            assert together[0][0] == alone
        finally:
            await engine.aclose()

    asyncio.run(go())


def test_a_token_split_the_text_does_not_show_is_regenerated_or_unverifiable(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the answer's text re-encodes to another token count than the worker signed, the
    scored tokens are not the worker's: deterministic decoding is regenerated (the same text
    acquits, another keeps the verdict); unseeded sampling is unverifiable, never disputed. The
    tiny byte tokenizer has one split per text, so the re-encoding is made to differ here."""
    from ccgw.enclave.engine import engine as engine_mod
    from ccgw.verify.consistency import UNVERIFIABLE, Verdict

    real = engine_mod.check_answer

    def two_fewer(*args: object) -> object:
        _, scored = real(*args)  # type: ignore[arg-type]
        n = len(scored.answer) - 2
        shorter = type(scored)(scored.answer[:n], scored.ends)
        return Verdict(INCONSISTENT, 0, "as re-encoded", n, 1), shorter

    async def go() -> None:
        engine = load_engine(tiny_dir, "t")
        try:
            seeded = _req("Seeded", 12, temperature=1.0, seed=5)
            answer, fin = await _run(engine, seeded)
            monkeypatch.setattr(engine_mod, "check_answer", two_fewer)
            args = (fin.finish_reason, fin.output_tokens)
            v, _ = await engine.score(_job(seeded), answer, *args)
            assert v.status == CONSISTENT and "regenerated exactly" in v.reason
            v, _ = await engine.score(_job(seeded), answer + "x", *args)
            assert v.status == INCONSISTENT  # not what the seed generates: the verdict stands
            top_p = _req("Seeded", 12, temperature=1.0, top_p=0.8)
            v, _ = await engine.score(_job(top_p), answer, *args)
            assert v.status == UNVERIFIABLE and "cannot be recovered" in v.reason
            # more tokens than the worker signed is no split of its own: the verdict stands
            v, _ = await engine.score(_job(top_p), answer, fin.finish_reason, fin.output_tokens - 3)
            assert v.status == INCONSISTENT
            # the same count as signed: the scored tokens are the worker's, the verdict stands
            v, _ = await engine.score(
                _job(seeded), answer, fin.finish_reason, fin.output_tokens - 2
            )
            assert v.status == INCONSISTENT and v.reason == "as re-encoded"
        finally:
            await engine.aclose()

    asyncio.run(go())
