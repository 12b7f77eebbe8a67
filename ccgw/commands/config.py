"""`ccgw config COMMAND`: each option of COMMAND with its value and where it comes from (a flag,
CCGW_* in the environment, the config file, or the default) — see ccgw.settings."""

from __future__ import annotations

import argparse

from ccgw.commands._common import CliError, Subparsers


def register(sub: Subparsers) -> None:
    c = sub.add_parser(
        "config",
        help="show the settings a command would run with, and where each comes from",
        description=__doc__,
    )
    c.add_argument("command", help="the command to show, e.g. ask, proxy, worker")
    c.add_argument("args", nargs=argparse.REMAINDER, help="flags as you would pass them")
    c.set_defaults(func=_config, default_log_level="WARNING")


def _config(args: argparse.Namespace) -> int:
    import os

    from ccgw.cli import _parser, apply_settings, subcommands

    parser = _parser()
    if args.command not in subcommands(parser):
        raise CliError(f"no command {args.command!r} (see ccgw --help)")
    argv = [*(["--config", str(args.config)] if args.config else []), args.command, *args.args]
    for s in apply_settings(parser, argv, os.environ):
        shown = "(from the flag)" if s.source == "flag" else repr(s.value)
        print(f"{s.option:<24} {shown:<40} {s.source}")
    return 0
