"""`ccgw` in-process, for tests: main() configures structlog for its own run (bound to the
captured stderr of that moment); the previous configuration is put back afterwards."""

from __future__ import annotations

import structlog

from ccgw.cli import main


def run_main(args: list[str]) -> int:
    saved = structlog.get_config()
    try:
        return main(args)
    finally:
        structlog.configure(**saved)
