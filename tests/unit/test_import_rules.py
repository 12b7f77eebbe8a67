"""The arrows only point down: client/gateway/enclave → verify → protos; client never imports
gateway or enclave; gateway never imports enclave; enclave never imports gateway or client;
verify imports no server, torch or NVML.

Everything installs under the one top-level name `ccgw` (the folders protos/, verify/, client/,
gateway/, enclave/, simtee/ are the packages ccgw.protos, ccgw.verify, …): no file may import them
by their bare folder names, which would shadow other distributions' `client` or `verify` and load
the same module twice under two names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = ("protos", "verify", "client", "gateway", "enclave", "simtee")
# Keys: our subpackages; values: what each must not import (ccgw subpackages by their short
# name, third-party packages by their top-level name; "ccgw" = the composition root itself).
FORBIDDEN = {
    "verify": {"client", "gateway", "enclave", "simtee", "ccgw", "torch", "pynvml", "grpc"},
    "client": {"gateway", "enclave", "simtee", "ccgw", "torch", "pynvml"},
    "gateway": {"enclave", "client", "simtee", "ccgw", "torch"},
    # transformers / sentence-transformers are test-only references for the engine's parity tests;
    # GGUF is parsed only by the importer (ccgw.modelimport), never inside the worker
    "enclave": {
        "gateway",
        "client",
        "simtee",
        "ccgw",
        "transformers",
        "sentence_transformers",
        "gguf",
    },
    "simtee": {"gateway", "client", "ccgw"},
}


def _modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def imports(path: Path) -> set[str]:
    """Short names: `ccgw.gateway.jobs` → gateway, `ccgw.cli` → ccgw, `torch.nn` → torch."""
    out: set[str] = set()
    for mod in _modules(path):
        parts = mod.split(".")
        if parts[0] == "ccgw":
            out.add(parts[1] if len(parts) > 1 and parts[1] in SUBPACKAGES else "ccgw")
        else:
            out.add(parts[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_import_rules(package: str) -> None:
    files = list((ROOT / package).rglob("*.py"))
    assert files, f"no files in {package}"
    bad = {str(f.relative_to(ROOT)): sorted(imports(f) & FORBIDDEN[package]) for f in files}
    assert {k: v for k, v in bad.items() if v} == {}


def _project_files() -> list[Path]:
    out = []
    for top in (*SUBPACKAGES, "ccgw", "tests", "bench", "scripts"):
        base = ROOT / top
        if base.is_symlink():
            continue
        out += [p for p in base.rglob("*.py") if not any(q.is_symlink() for q in p.parents)]
    return out


def test_nothing_imports_a_bare_folder_name() -> None:
    files = _project_files()
    assert len(files) > 50
    bad = {
        str(f.relative_to(ROOT)): sorted(m for m in _modules(f) if m.split(".")[0] in SUBPACKAGES)
        for f in files
    }
    assert {k: v for k, v in bad.items() if v} == {}


def test_each_subpackage_is_linked_into_ccgw() -> None:
    for name in SUBPACKAGES:
        link = ROOT / "ccgw" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve(), name
