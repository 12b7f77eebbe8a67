"""The consistency rule (verify.consistency.verdict), pure: each way an answer can be
inconsistent is named at its first position; a skipped check is never a pass."""

from __future__ import annotations

import pytest

from ccgw.verify.consistency import (
    CONSISTENT,
    INCONSISTENT,
    UNVERIFIABLE,
    Decoding,
    TokenScore,
    Tolerance,
    Verdict,
    verdict,
)

GREEDY = Decoding.of(0.0, 1.0, 0, 4, None, ())
TOL = Tolerance(logit_margin=1.0, mass_margin=0.05)


def ts(gap: float = 0.0, *, mass: float = 0.0, kth: float | None = None, **kw: float) -> TokenScore:
    return TokenScore(
        token=1,
        logit=10.0 - gap,
        top_token=1 if gap == 0 else 2,
        top_logit=10.0,
        rank=0 if gap == 0 else 1,
        kth_logit=kth,
        mass_above=mass,
        draw=kw.get("draw"),
        cum_lo=kw.get("lo"),
        cum_hi=kw.get("hi"),
    )


def test_greedy_tokens_within_the_margin_pass_and_the_first_beyond_is_named() -> None:
    ok = verdict(GREEDY, "length", 4, [ts(), ts(0.9), ts(), ts()], {}, TOL)
    assert ok.status == CONSISTENT
    bad = verdict(GREEDY, "length", 4, [ts(), ts(0.5), ts(1.5), ts(3.0)], {}, TOL)
    assert (bad.status, bad.position) == (INCONSISTENT, 2) and "not the argmax" in bad.reason


def test_top_k_and_top_p_bounds() -> None:
    top_k = Decoding.of(0.8, 1.0, 3, 2, None, ())
    assert verdict(top_k, "length", 2, [ts(2, kth=9.5), ts(2, kth=7.0)], {}, TOL).position == 0
    assert (
        verdict(top_k, "length", 2, [ts(2, kth=8.5), ts(2, kth=7.0)], {}, TOL).inconsistent is False
    )
    top_p = Decoding.of(1.0, 0.8, 0, 2, None, ())
    v = verdict(top_p, "length", 2, [ts(1, mass=0.84), ts(1, mass=0.86)], {}, TOL)
    assert (v.status, v.position) == (INCONSISTENT, 1) and "nucleus" in v.reason


def test_seeded_draw_must_land_in_the_widened_interval() -> None:
    seeded = Decoding.of(1.0, 1.0, 0, 1, 7, ())
    inside = ts(draw=0.5, lo=0.45, hi=0.6)
    assert verdict(seeded, "length", 1, [inside], {}, TOL).status == CONSISTENT
    far = ts(draw=0.99, lo=0.0, hi=0.01)
    v = verdict(seeded, "length", 1, [far], {}, TOL)
    assert v.inconsistent and "seeded draw" in v.reason


def test_length_and_stop_ends_catch_truncation() -> None:
    three = [ts(), ts(), ts()]
    v = verdict(GREEDY, "length", 3, three, {}, TOL)  # max_tokens is 4
    assert (v.status, v.position) == (INCONSISTENT, 3) and "truncated" in v.reason
    no_eos = verdict(GREEDY, "stop", 3, three, {"eos:2": (ts(4.0),)}, TOL)
    assert no_eos.inconsistent and "would not stop" in no_eos.reason
    assert verdict(GREEDY, "stop", 3, three, {"eos:2": (ts(0.2),)}, TOL).status == CONSISTENT
    # the receipt's count must match the answer's when the end is the end-of-sequence token
    assert verdict(GREEDY, "stop", 5, three, {"eos:2": (ts(),)}, TOL).inconsistent
    # a stop sequence: the receipt counts its tokens too
    assert verdict(GREEDY, "stop", 5, three, {"stop:0": (ts(), ts())}, TOL).status == CONSISTENT
    assert verdict(GREEDY, "length", 5, [ts()] * 5, {}, TOL).inconsistent  # over max_tokens
    assert verdict(GREEDY, "eos", 3, three, {}, TOL).inconsistent


def test_unchecked_answers_are_unverifiable_never_consistent() -> None:
    free = Decoding.of(1.0, 1.0, 0, 2, None, ())
    v = verdict(free, "length", 2, [ts(9), ts(9)], {}, TOL)
    assert v.status == UNVERIFIABLE
    lossy = verdict(GREEDY, "length", 4, [ts(), ts(), ts(5), ts(5)], {}, TOL, lossless_tokens=2)
    assert lossy.status == UNVERIFIABLE and lossy.checked_tokens == 2
    early = verdict(GREEDY, "length", 4, [ts(5), ts(), ts(), ts()], {}, TOL, lossless_tokens=2)
    assert (early.status, early.position) == (INCONSISTENT, 0)


def test_verdict_round_trips_and_refuses_unknown_statuses() -> None:
    v = Verdict(INCONSISTENT, 3, "why", 8, 4)
    assert Verdict.from_json(v.to_json()) == v
    with pytest.raises(ValueError, match="status"):
        Verdict.from_json({**v.to_json(), "status": "fine"})
