"""Pure pieces of the engine: the batched sampler and the text stream (UTF-8 and stop safety)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ccgw.enclave.engine.detok import StopFilter
from ccgw.enclave.engine.sampling import BatchSampling, select, uniforms
from ccgw.enclave.engine.tiny import byte_tokenizer
from ccgw.enclave.engine.tokenizer import text_decoder

TOK = byte_tokenizer()
TEXT = text_decoder(TOK)


def batch(n: int, **kw: object) -> BatchSampling:
    base: dict[str, object] = dict(
        temperature=torch.ones(n),
        top_p=torch.ones(n),
        top_k=torch.zeros(n, dtype=torch.long),
        seed_lo=torch.arange(n, dtype=torch.long),
        seed_hi=torch.zeros(n, dtype=torch.long),
        counter=torch.zeros(n, dtype=torch.long),
        sampled=True,
        filtered=False,
    )
    base.update(kw)
    return BatchSampling(**base)  # type: ignore[arg-type]


def test_uniforms_are_uniform_and_depend_only_on_seed_and_counter() -> None:
    n = 20000
    u = uniforms(torch.full((n,), 7), torch.full((n,), 1), torch.arange(n))
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    hist = torch.histc(u, bins=10, min=0, max=1) / n
    assert bool(((hist - 0.1).abs() < 0.01).all()), hist
    again = uniforms(torch.full((3,), 7), torch.full((3,), 1), torch.tensor([5, 6, 7]))
    assert torch.equal(again, u[5:8])
    big = torch.tensor([0xFFFFFFFF, 0xFFFFFFFF])  # the largest 32-bit halves do not overflow
    assert bool((uniforms(big, big, big) < 1).all())


def test_sampling_follows_the_distribution_and_filters() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    s = batch(4000, seed_lo=torch.arange(4000))
    freq = torch.bincount(select(logits, s), minlength=4).float() / 4000
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03), freq
    assert int(s.counter[0]) == 1  # each draw advances the row's counter
    top_k = select(logits, batch(4000, top_k=torch.full((4000,), 2), filtered=True))
    assert set(top_k.tolist()) == {0, 1}
    top_p = select(logits, batch(4000, top_p=torch.full((4000,), 0.7), filtered=True))
    assert set(top_p.tolist()) == {0, 1}  # 0.5 alone is below 0.7; 0.5 + 0.3 reaches it
    greedy = select(logits, batch(4000, temperature=torch.zeros(4000)))
    assert set(greedy.tolist()) == {0}


def test_a_row_draws_the_same_alone_or_in_a_batch() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=g)
    kw = dict(top_k=torch.tensor([0, 5, 0, 10, 3, 0]), top_p=torch.tensor([1, 0.9, 0.5, 1, 1, 0.8]))
    together = select(logits, batch(6, filtered=True, **kw))  # type: ignore[arg-type]
    for i in range(6):
        alone = select(
            logits[i : i + 1],
            batch(
                1,
                filtered=True,
                seed_lo=torch.tensor([i]),
                top_k=kw["top_k"][i : i + 1],
                top_p=kw["top_p"][i : i + 1],
            ),
        )
        assert int(alone[0]) == int(together[i])


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_streamed_text_is_complete_characters_and_round_trips(text: str) -> None:
    ids = TOK.encode(text, add_special_tokens=False).ids
    dec = TEXT.stream()
    parts = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(parts) == text
    assert all("\ufffd" not in p for p in parts) or "\ufffd" in text


def test_multibyte_characters_wait_for_their_last_byte() -> None:
    ids = TOK.encode("é🙂", add_special_tokens=False).ids
    assert len(ids) == 6  # 2 + 4 bytes
    dec = TEXT.stream()
    assert [dec.push(i) for i in ids] == ["", "é", "", "", "", "🙂"]


def stream(stops: tuple[str, ...], pieces: list[str]) -> tuple[list[tuple[str, int]], bool]:
    f = StopFilter(stops)
    out = [f.feed(p, 1) for p in pieces] + [f.finish()]
    return [(c.text, c.tokens) for c in out if c is not None], f.stopped


def test_stop_sequence_split_across_tokens_is_cut_and_never_leaks() -> None:
    chunks, stopped = stream(("END",), ["ab", "cE", "N", "Dxyz"])
    assert stopped and "".join(t for t, _ in chunks) == "abc"
    assert sum(n for _, n in chunks) == 4
    # a held-back prefix that does not become the stop sequence is released
    chunks, stopped = stream(("END",), ["ab", "E", "Nx", "y"])
    assert not stopped and "".join(t for t, _ in chunks) == "abENxy"
    assert chunks[0] == ("ab", 1)  # "E" was held back while it could still start "END"
    assert sum(n for _, n in chunks) == 4
