"""Where the real vectors written by others live: tests/vectors/data (see its PROVENANCE.md for
where each file comes from and its licence), or $CCGW_VECTORS_DIR to run the same tests against
another set of genuine samples."""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def vectors_dir() -> Path:
    env = os.environ.get("CCGW_VECTORS_DIR")
    path = Path(env) if env else DATA
    if not (path / "PROVENANCE.md").is_file():
        raise FileNotFoundError(
            f"real evidence vectors not found at {path} (PROVENANCE.md missing)"
        )
    return path.resolve()
