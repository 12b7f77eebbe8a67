from __future__ import annotations

from pathlib import Path

import pytest

from ccgw.enclave.engine.tiny import write_tiny_model


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "llama")
