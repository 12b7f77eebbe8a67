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
    a = ap.parse_args()
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
