"""Where the real vectors written by others live: ../shared/vectors next to the repository (see
its PROVENANCE.md), or $CCGW_VECTORS_DIR. Tests skip, saying why, only when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def vectors_dir() -> Path:
    env = os.environ.get("CCGW_VECTORS_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "vectors"
    if not (path / "PROVENANCE.md").is_file():
        pytest.skip(f"real evidence vectors not found at {path} (set CCGW_VECTORS_DIR)")
    return path.resolve()
