"""`pip install ccgw` is for apps: the SDK, the proxy and the CLI's app commands import neither
torch nor NVML (checked in a fresh interpreter), and the core dependencies name neither; the
`worker` extra brings them, and `dev` includes `worker`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "pynvml", "safetensors", "tokenizers", "numpy", "jinja2", "transformers")


def test_sdk_proxy_and_cli_import_no_torch_or_nvml() -> None:
    code = (
        "import sys\n"
        "import ccgw.client.sdk, ccgw.client.proxy, ccgw.client.audit, ccgw.cli\n"
        "from ccgw.cli import _parser\n"
        "_parser().parse_args(['proxy', '--gateway', 'g:1', '--token-file', 't'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def _names(reqs: list[str]) -> set[str]:
    return {r.split(">")[0].split("=")[0].split("[")[0].split("<")[0].strip().lower() for r in reqs}


def test_core_dependencies_leave_torch_and_nvml_to_the_worker_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _names(project["dependencies"])
    extras = project["optional-dependencies"]
    assert not core & {"torch", "nvidia-ml-py", "safetensors", "tokenizers", "numpy", "jinja2"}
    assert {"grpcio", "cryptography", "aiohttp"} <= core
    assert {"torch", "nvidia-ml-py", "safetensors", "tokenizers"} <= _names(extras["worker"])
    assert any(r.startswith("ccgw[") and "worker" in r for r in extras["dev"])
    assert {"openai", "pyyaml"} <= _names(extras["dev"])
