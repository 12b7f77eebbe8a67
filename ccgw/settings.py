"""Settings from a config file and CCGW_* environment variables, for every `ccgw` command.

Precedence, highest first: a flag on the command line > an environment variable > the config file
> the built-in default.

- Environment: `CCGW_<OPTION>` with the option's long name upper-cased and `-` as `_`, e.g.
  `CCGW_GATEWAY`, `CCGW_TOKEN_FILE`, `CCGW_TLS_CA`; it applies to every command that has that
  option. Boolean flags take 1/true/yes or 0/false/no. Options that may be repeated (`--model` of
  `ccgw worker`, `--auth-pubkey`) come only from flags or the file.
- Config file: `--config FILE` or `CCGW_CONFIG=FILE`, TOML. Top-level keys apply to every command
  that has the option; a table named after a command applies to that command only (and wins):

      gateway = "127.0.0.1:7443"
      tls-ca = "certs/ca.crt"
      [ask]
      token-file = "alice.jwt"
      model = "tiny"

`ccgw config COMMAND` prints each option of COMMAND with its value and where it came from.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccgw.commands._common import EXIT_USAGE, CliError

ENV_PREFIX = "CCGW_"
CONFIG_ENV = "CCGW_CONFIG"
CONFIG_BYTES_MAX = 256 * 1024
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Setting:
    option: str  # the long flag, e.g. --token-file
    value: Any
    source: str  # "flag", "env CCGW_X", "file F [table]", "default"


def env_name(option: str) -> str:
    return ENV_PREFIX + option.lstrip("-").upper().replace("-", "_")


def load_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read config file {path}: {exc.strerror}", EXIT_USAGE) from None
    if len(raw) > CONFIG_BYTES_MAX:
        raise CliError(f"config file {path} exceeds {CONFIG_BYTES_MAX} bytes")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"config file {path} is not valid TOML: {exc}") from None


def _long(action: argparse.Action) -> str | None:
    longs = [o for o in action.option_strings if o.startswith("--")]
    return longs[0] if longs else None


def _convert(action: argparse.Action, value: Any, where: str) -> Any:
    repeated = isinstance(action, argparse._AppendAction)
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            value = value.lower() in _TRUE
        if not isinstance(value, bool):
            raise CliError(f"{where}: expected true or false, got {value!r}")
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    items = value if repeated and isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise CliError(f"{where}: expected a string or number, got {item!r}")
        v: Any = item
        if action.type is not None and callable(action.type):
            try:
                v = action.type(str(item))
            except (TypeError, ValueError):
                raise CliError(f"{where}: {item!r} is not a valid value") from None
        if action.choices is not None and v not in action.choices:
            raise CliError(f"{where}: {item!r} is not one of {sorted(action.choices)}")
        out.append(v)
    return out if repeated else out[0]


def resolve(
    command: str,
    parser: argparse.ArgumentParser,
    argv: list[str],
    env: Mapping[str, str],
    file: Mapping[str, Any] | None,
    file_name: str = "",
) -> list[Setting]:
    """Apply env and file values as defaults of `parser` (flags still win) and return every
    option's setting with its source. Unknown keys in the file's tables are errors."""
    table = file.get(command, {}) if file else {}
    if file and not isinstance(table, dict):
        raise CliError(f"config file {file_name}: [{command}] must be a table")
    known = {(_long(a) or "").lstrip("-") for a in parser._actions}
    for key in table:
        if key not in known:
            raise CliError(f"config file {file_name}: [{command}] has no option {key!r}")
    out = []
    for action in parser._actions:
        opt = _long(action)
        if opt is None or action.dest in ("help", "version", argparse.SUPPRESS):
            continue
        key = opt.lstrip("-")
        if any(a == opt or a.startswith(opt + "=") for a in argv):
            out.append(Setting(opt, None, "flag"))  # the flag wins; its value is parsed later
            continue
        source, value = "default", action.default
        in_top = file is not None and key in file and not isinstance(file[key], dict)
        if key in table or in_top:
            where = (
                f"config file {file_name} [{command}]"
                if key in table
                else f"config file {file_name}"
            )
            value = _convert(action, table[key] if key in table else file[key], f"{where} {key}")  # type: ignore[index]
            source = where
        name = env_name(opt)
        if name in env and not isinstance(action, argparse._AppendAction):
            value = _convert(action, env[name], f"environment {name}")
            source = f"env {name}"
        if source != "default":
            parser.set_defaults(**{action.dest: value})
            action.required = False
        out.append(Setting(opt, value, source))
    return out
