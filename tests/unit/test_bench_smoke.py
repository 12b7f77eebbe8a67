"""The cheapest benchmark runs as docs/benchmarks.md gives it: a receipt or wire format change that
breaks `bench/wire_bench.py` (it once still signed version-1 receipts) fails here, not for the
next reader; every bench script at least parses its arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wire_bench_runs_and_prints_its_table() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "wire_bench.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "verify receipt" in out and "verify evidence bundle" in out


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "bench").glob("*.py")))
def test_every_bench_parses_its_arguments(script: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--help"],
        capture_output=True,
        timeout=120,
        check=True,
    )
