"""Engine benchmark: prefill latency, time to first token, decode throughput at batch 1/8/32 for
our engine (continuous batching, KV cache, scheduler and streaming included), a naive eager
baseline (no KV cache: the whole sequence recomputed every token, one request at a time) and HF
`generate` when transformers is installed — same weights, same run. Also host↔device traffic
and synchronisations per decode step.

    python bench/engine_bench.py [--device cuda] [--dtype bfloat16] [--hidden 256 --layers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from enclave.engine import EngineLimits, Finished, GenerationRequest, load_engine
from enclave.engine.tiny import write_tiny_model


def make_model(d: Path, hidden: int, layers: int) -> Path:
    write_tiny_model(d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=max(4, hidden // 64),
        num_key_value_heads=max(2, hidden // 256),
    )
    (d / "config.json").write_text(json.dumps(cfg))
    from safetensors.torch import save_file

    from enclave.engine.model import ModelArgs, Transformer

    torch.manual_seed(0)
    m = Transformer(ModelArgs.from_config(cfg))
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(d / "model.safetensors"))
    return d


def request(prompt_len: int, new: int) -> GenerationRequest:
    return GenerationRequest(
        prompt="x" * prompt_len, messages=None, max_new_tokens=new, max_input_tokens=prompt_len + 8
    )


async def ours(engine, batch: int, prompt_len: int, new: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """(wall s, mean TTFT s, decode tok/s) for `batch` concurrent requests."""
    ttfts: list[float] = []

    async def one() -> int:
        t0 = time.perf_counter()
        first = None
        out = 0
        async for ev in engine.generate(request(prompt_len, new)):
            if first is None:
                first = time.perf_counter() - t0
            if isinstance(ev, Finished):
                out = ev.output_tokens
        ttfts.append(first or 0.0)
        return out

    t0 = time.perf_counter()
    outs = await asyncio.gather(*(one() for _ in range(batch)))
    wall = time.perf_counter() - t0
    return wall, statistics.mean(ttfts), sum(outs) / max(wall - statistics.mean(ttfts), 1e-9)


@torch.inference_mode()
def naive(model, batch: int, prompt_len: int, new: int, device: str) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    ttft = 0.0
    for _ in range(batch):
        ids = torch.full((1, prompt_len), 65, device=device)
        for i in range(new):
            model.setup_cache(
                1, prompt_len + new, torch.device(device), next(model.parameters()).dtype
            )
            nxt = model(ids, 0)[0, -1].argmax()
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
            if i == 0 and ttft == 0.0:
                ttft = time.perf_counter() - t0
    wall = time.perf_counter() - t0
    return wall, ttft, batch * new / wall


def hf(
    d: Path, batch: int, prompt_len: int, new: int, device: str
) -> tuple[float, float, float] | None:
    try:
        import transformers
    except ImportError:
        return None
    m = transformers.AutoModelForCausalLM.from_pretrained(str(d), torch_dtype=torch.float32).to(
        device
    )
    ids = torch.full((batch, prompt_len), 65, device=device)
    t0 = time.perf_counter()
    m.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
    ttft = time.perf_counter() - t0
    t0 = time.perf_counter()
    m.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False)
    wall = time.perf_counter() - t0
    return wall, ttft, batch * new / max(wall - ttft, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=32)
    a = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        d = make_model(Path(tmp) / "m", a.hidden, a.layers)
        engine = load_engine(
            d,
            "bench",
            device=a.device,
            dtype=a.dtype,
            limits=EngineLimits(
                batch_size_max=32, context_tokens_max=a.prompt + a.new + 8, new_tokens_max=a.new
            ),
        )
        from enclave.engine.loader import load_model

        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        baseline, _, _ = load_model(d, None, a.device, dtypes[a.dtype])  # its own weights and cache
        asyncio.run(ours(engine, 1, a.prompt, 4))  # warm-up
        print(
            f"device={a.device} dtype={a.dtype} hidden={a.hidden} layers={a.layers} "
            f"prompt={a.prompt} new={a.new} torch={torch.__version__}"
        )
        print(f"{'engine':<10} {'batch':>5} {'wall s':>8} {'TTFT ms':>9} {'decode tok/s':>13}")
        rows = []
        for batch in (1, 8, 32):
            s0 = engine.stats.steps
            c0, b0, h0 = (
                engine.stats.device_to_host_copies,
                engine.stats.device_to_host_bytes,
                engine.stats.host_to_device_bytes,
            )
            w, t, tps = asyncio.run(ours(engine, batch, a.prompt, a.new))
            steps = max(engine.stats.steps - s0, 1)
            rows.append(
                (
                    batch,
                    (engine.stats.device_to_host_copies - c0) / steps,
                    (engine.stats.device_to_host_bytes - b0) / steps,
                    (engine.stats.host_to_device_bytes - h0) / steps,
                )
            )
            print(f"{'ccgw':<10} {batch:>5} {w:>8.3f} {t * 1000:>9.1f} {tps:>13.1f}")
            if batch <= 8:
                w, t, tps = naive(baseline, batch, a.prompt, a.new, a.device)
                print(f"{'naive':<10} {batch:>5} {w:>8.3f} {t * 1000:>9.1f} {tps:>13.1f}")
            h = hf(d, batch, a.prompt, a.new, a.device) if a.dtype == "float32" else None
            if h is not None:
                print(
                    f"{'hf':<10} {batch:>5} {h[0]:>8.3f} {h[1] * 1000:>9.1f} {h[2] * 1000 / 1000:>13.1f}"
                )
        print()
        print(f"{'batch':>5} {'D2H copies/step':>16} {'D2H bytes/step':>15} {'H2D bytes/step':>15}")
        for b, c, db, hb in rows:
            print(f"{b:>5} {c:>16.2f} {db:>15.1f} {hb:>15.1f}")
        asyncio.run(engine.aclose())


if __name__ == "__main__":
    main()
