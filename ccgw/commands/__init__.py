"""The `ccgw` subcommands, one module per area. Each module has `register(subparsers)`, which adds
its parsers and sets `func` to the handler (args -> exit code). `ccgw.cli` wires them in order."""

from __future__ import annotations

from types import ModuleType

from ccgw.commands import (
    app,
    attest,
    audit,
    config,
    doctor,
    evidence,
    ledger,
    model,
    ops,
    proxy,
    release,
    run,
    spotcheck,
    vendor,
    verify,
)

MODULES: tuple[ModuleType, ...] = (
    run,
    app,
    proxy,
    ops,
    ledger,
    audit,
    spotcheck,
    attest,
    verify,
    vendor,
    release,
    evidence,
    doctor,
    model,
    config,
)
