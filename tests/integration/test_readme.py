"""README.md stays true: every ```sh block after the set-up section runs, in order, in one bash
process (`set -euo pipefail`) in an empty temporary folder, with the `ccgw` and `python` of this
environment first on PATH and no CCGW_* variables. The only change made to the text: the ports
7443 (gateway) and 8080 (proxy) become free ports. The set-up section's two commands are what
.ci/run runs (checked here too), so CI runs them."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
PORTS = ("7443", "8080")


def blocks() -> tuple[list[str], list[str]]:
    """(set-up blocks, the blocks after them)."""
    text = (ROOT / "README.md").read_text()
    cut = text.index("## Running the pieces")
    return BLOCK.findall(text[:cut]), BLOCK.findall(text[cut:])


def test_setup_section_is_two_commands_and_ci_runs_them() -> None:
    setup, rest = blocks()
    assert len(setup) == 2 and len(rest) >= 5
    install, tests = (b.strip() for b in setup)
    assert install.endswith("ccgw demo") and tests == ". .venv/bin/activate && python -m pytest -q"
    ci = (ROOT / ".ci" / "run").read_text()
    ci_lines = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.startswith("#")]
    for step in install.removesuffix("&& ccgw demo").split("&&"):
        words = shlex.split(step)
        words = [w for w in words if w != "-q"]
        assert any(
            shlex.split(ln) == words or [w for w in shlex.split(ln) if w != "-q"] == words
            for ln in ci_lines
        ), step
    assert "python -m pytest -q" in ci_lines


def script(text_blocks: list[str], ports: dict[str, int]) -> str:
    out = ["set -euo pipefail"]
    for i, b in enumerate(text_blocks):
        for old, new in ports.items():
            b = b.replace(f":{old}", f":{new}")
        out += [f"echo '::block {i}::' >&2", b]
    return "\n".join(out) + "\n"


@pytest.mark.slow
def test_readme_runs_as_written(tmp_path: Path) -> None:
    _, rest = blocks()
    ports = {p: free_port() for p in PORTS}
    body = script(rest, ports)
    assert body.count(":7443") == 0 and body.count(":8080") == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGW_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        ["bash", "-c", body],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything a failed block left running
    logs = "".join(
        f"\n--- {f.name}\n{f.read_text()[-1500:]}" for f in sorted(tmp_path.glob("*.log"))
    )
    assert proc.returncode == 0, out[-4000:] + logs
    assert "receipt: VERIFIED" in out and "AUDIT OK" in out
    assert "receipt verified: True" in out
    assert out.count("VERIFIED w-") >= 1
    assert (tmp_path / "policy.toml").read_text().count("allowed_measurements") == 1
