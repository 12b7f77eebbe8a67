"""The `ccgw` command: the composition root's entry point.

Subcommands live in ccgw/commands/ (one module per area). Every expected failure ends as one line
on stderr, `ccgw <command>: <what is wrong>`, with an exit code that tells an operator what kind of
failure it was; a traceback is printed only with --debug.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccgw import logs
from ccgw.commands import MODULES
from ccgw.commands._common import EXIT_CHECK_FAILED, EXIT_GATEWAY, EXIT_USAGE, CliError
from ccgw.settings import CONFIG_ENV, Setting, load_file, resolve

if TYPE_CHECKING:
    import grpc

EPILOG = """exit codes:
  0  success
  1  a check failed (audit discrepancy, refused evidence, an enforced check failed)
  2  usage or input error (flags, files, tokens, policies)
  3  the gateway is unreachable or misbehaving

settings: a flag > CCGW_<OPTION> in the environment (e.g. CCGW_GATEWAY, CCGW_TLS_CA) > the
config file (--config FILE or CCGW_CONFIG; TOML, top-level keys or a [command] table) > the
default. `ccgw config COMMAND` shows where each value comes from.
"""


def _version() -> str:
    try:
        return version("ccgw")
    except PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ccgw",
        description="confidential-compute inference gateway",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"ccgw {_version()}")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default per command)")
    p.add_argument("--debug", action="store_true", help="print tracebacks of failures")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML settings file (also CCGW_CONFIG); flags and CCGW_* variables override it",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for module in MODULES:
        module.register(sub)
    return p


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command_of(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[str | None, list[str]]:
    """The subcommand named in argv and the arguments after it (global options come first)."""
    names = subcommands(parser)
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in names:
            return a, argv[i + 1 :]
        i += 2 if a in ("--log-level", "--config") else 1
    return None, []


def apply_settings(
    parser: argparse.ArgumentParser, argv: list[str], env: Mapping[str, str]
) -> list[Setting]:
    """Env and config-file values become the subcommand's defaults (see ccgw.settings)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    cmd, rest = _command_of(parser, argv)
    if cmd is None:
        return []
    path = known.config or (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    file = load_file(path) if path is not None else None
    return resolve(cmd, subcommands(parser)[cmd], rest, env, file, str(path or ""))


# Packages of optional extras (pyproject.toml): a command that needs one names the extra to install.
_EXTRA_OF_MODULE = {
    "torch": "worker",
    "pynvml": "worker",
    "safetensors": "worker",
    "tokenizers": "worker",
    "jinja2": "worker",
    "numpy": "worker",
    "psycopg": "postgres",
    "gguf": "import",
}


def expected_failure(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) for a failure a user can act on; None for a bug."""
    import grpc

    from ccgw.client.errors import ClientError, GatewayRefused, NoTrustedWorker
    from ccgw.enclave.errors import EnclaveError
    from ccgw.gateway.errors import GatewayError
    from ccgw.verify.errors import MalformedError, PolicyFileError, VerifyError

    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        extra = _EXTRA_OF_MODULE.get(exc.name.split(".")[0])
        if extra is not None:
            return EXIT_USAGE, (
                f"this command needs the {exc.name.split('.')[0]} package: "
                f"pip install 'ccgw[{extra}]'"
            )
    if isinstance(exc, grpc.aio.AioRpcError):
        return EXIT_GATEWAY, _refused(exc.code(), exc.details() or "")
    if isinstance(exc, GatewayRefused):
        return EXIT_GATEWAY, _refused(exc.code, exc.details)
    if isinstance(exc, NoTrustedWorker):
        return EXIT_CHECK_FAILED, (
            f"{exc} (check --policy, and --allow-simulated-tee for a development worker)"
        )
    if isinstance(exc, ClientError):
        return EXIT_CHECK_FAILED, str(exc)
    if isinstance(exc, PolicyFileError):
        return EXIT_USAGE, f"policy file: {exc} (fix the file, or derive one: ccgw derive-policy)"
    if isinstance(exc, MalformedError | VerifyError):
        return EXIT_CHECK_FAILED, str(exc)
    if isinstance(exc, EnclaveError | GatewayError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return EXIT_USAGE, f"{exc.strerror or exc}{':' if where else ''}{where}"
    return None


def _refused(code: grpc.StatusCode, details: str) -> str:
    """One line for a failed gateway call, saying what to check."""
    import grpc

    d = " ".join(details.split())
    low = d.lower()
    if code == grpc.StatusCode.UNAVAILABLE and any(
        w in low for w in ("ssl", "tls", "handshake", "certificate")
    ):
        return (
            "the TLS handshake with the gateway failed (check --tls-ca against the gateway's "
            f"--tls-cert, and that the address matches its certificate): {d}"
        )
    if code == grpc.StatusCode.UNAVAILABLE:
        return (
            "cannot reach the gateway (is it running at that address, and does it use TLS "
            f"exactly when you pass --tls-ca?): {d}"
        )
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"the gateway refused the token (issue a new one with `ccgw token`): {d}"
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return f"the gateway refused the job (for funds: `ccgw deposit`): {d}"
    return f"the gateway refused the call: {code.name}: {d}"


def _print_failure(cmd: str, exc: BaseException) -> int:
    known = expected_failure(exc)
    if known is None:
        print(
            f"ccgw {cmd}: internal error: {type(exc).__name__}: {exc} "
            "(run again with --debug for the traceback)",
            file=sys.stderr,
        )
        return 70  # EX_SOFTWARE: a bug, not a user error
    code, message = known
    print(f"ccgw {cmd}: {' '.join(message.split())}", file=sys.stderr)
    return code


def _warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A warning as the CLI prints warnings: one `WARNING:` line on stderr, no source line."""
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    # gRPC core logs a failed TLS handshake on stderr itself: a command's one line says it (the
    # long-running roles and --debug keep gRPC's own logging)
    if "--debug" not in raw and not {"gateway", "worker"} & set(raw):
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    if raw[:1] == ["derive-policy"]:  # its own parser (verify.attestation.derive), -h included
        from ccgw.verify.attestation.derive import cli_derive_policy

        return cli_derive_policy(raw[1:])
    parser = _parser()
    debug = "--debug" in raw[: raw.index("--") if "--" in raw else len(raw)]
    try:
        apply_settings(parser, raw, os.environ)
    except CliError as exc:
        if debug:
            raise
        cmd, _ = _command_of(parser, raw)
        return _print_failure(cmd or "", exc)
    args = parser.parse_args(raw)
    logs.configure(args.log_level or getattr(args, "default_log_level", "INFO"))
    if not args.debug:
        warnings.showwarning = _warning_line  # e.g. each --accept-unreleased-software use
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        return _print_failure(args.cmd, exc)
