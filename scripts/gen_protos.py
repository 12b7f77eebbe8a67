"""Regenerate the Python code for protos/ccgw/v1/*.proto, imported as ccgw.protos.ccgw.v1 (committed;
tests/unit/test_protos_drift.py fails when it drifts). Run from the repository root: python scripts/gen_protos.py [OUT_DIR]."""

from __future__ import annotations

import sys
from pathlib import Path


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # dev dependency only

    root = Path(__file__).resolve().parent.parent
    protos = sorted(str(p.relative_to(root)) for p in (root / "protos/ccgw/v1").glob("*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # The protos/ folder is installed as the ccgw.protos package (one top-level name, `ccgw`).
    for f in (out_dir / "protos/ccgw/v1").iterdir():
        if f.suffix in (".py", ".pyi"):
            text = f.read_text()
            f.write_text(text.replace("from protos.ccgw.v1 import", "from ccgw.protos.ccgw.v1 import"))


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
