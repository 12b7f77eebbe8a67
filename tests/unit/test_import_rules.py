"""The arrows only point down: client/gateway/enclave → verify → protos; client never imports
gateway or enclave; gateway never imports enclave; enclave never imports gateway or client;
verify imports no server, torch or NVML."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "verify": {"client", "gateway", "enclave", "simtee", "ccgw", "torch", "pynvml", "grpc"},
    "client": {"gateway", "enclave", "simtee", "ccgw", "torch", "pynvml"},
    "gateway": {"enclave", "client", "simtee", "ccgw", "torch"},
    # transformers / sentence-transformers are test-only references for the engine's parity tests
    "enclave": {"gateway", "client", "simtee", "ccgw", "transformers", "sentence_transformers"},
    "simtee": {"gateway", "client", "ccgw"},
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_import_rules(package: str) -> None:
    files = list((ROOT / package).rglob("*.py"))
    assert files, f"no files in {package}"
    bad = {str(f.relative_to(ROOT)): sorted(imports(f) & FORBIDDEN[package]) for f in files}
    assert {k: v for k, v in bad.items() if v} == {}
