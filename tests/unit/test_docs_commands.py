"""Every `ccgw` command line in the guides, the docs and LIMITATIONS.md parses with the real CLI
parser (README.md's blocks are run for real by tests/integration/test_readme.py): a renamed flag or
command breaks this test, not a reader following the docs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccgw.cli import _parser
from tests.unit.test_deploy_manifests import ccgw_lines_in_shell

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [*ROOT.glob("docs/**/*.md"), ROOT / "LIMITATIONS.md", ROOT / "README.md"],
    key=lambda p: str(p),
)
FENCE = re.compile(r"```(?:sh|bash|console|shell)\n(.*?)```", re.S)


def commands() -> Iterator[tuple[str, list[str]]]:
    for path in DOCS:
        for block in FENCE.findall(path.read_text()):
            script = "\n".join(
                line.split("  #")[0].removeprefix("$ ") for line in block.splitlines()
            )
            for argv in ccgw_lines_in_shell(script):
                if argv:
                    yield f"{path.relative_to(ROOT)}: ccgw {' '.join(argv)[:50]}", argv


ALL = list(commands())


@pytest.mark.parametrize(("where", "argv"), ALL, ids=[w for w, _ in ALL])
def test_documented_command_parses(where: str, argv: list[str]) -> None:
    args = _parser().parse_args(argv)  # a usage error (SystemExit) fails the test
    assert callable(args.func), where


def test_the_guides_are_covered() -> None:
    where = {w.split(":")[0] for w, _ in ALL}
    assert {"docs/guides/auditor.md", "docs/guides/provider.md", "README.md"} <= where
