"""The committed generated code equals what the pinned generator makes from the .proto files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools not installed"
)
def test_generated_code_matches_protos(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from gen_protos import generate

    generate(tmp_path)
    gen_dir = tmp_path / "protos/ccgw/v1"
    generated = sorted(p.name for p in gen_dir.iterdir())
    assert generated, "generator produced nothing"
    for name in generated:
        committed = ROOT / "protos/ccgw/v1" / name
        assert committed.exists(), f"{name} is not committed"
        assert committed.read_bytes() == (gen_dir / name).read_bytes(), (
            f"{name} drifted; run scripts/gen_protos.py"
        )
