"""The `ccgw` command: the composition root's entry point.

Subcommands live in ccgw/commands/ (one module per area). Every expected failure ends as one line
on stderr, `ccgw <command>: <what is wrong>`, with an exit code that tells an operator what kind of
failure it was; a traceback is printed only with --debug.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from ccgw import logs
from ccgw.commands import MODULES
from ccgw.commands._common import EXIT_CHECK_FAILED, EXIT_GATEWAY, EXIT_USAGE, CliError

EPILOG = """exit codes:
  0  success
  1  a check failed (audit discrepancy, refused evidence, an enforced check failed)
  2  usage or input error (flags, files, tokens, policies)
  3  the gateway is unreachable or misbehaving
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
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for module in MODULES:
        module.register(sub)
    return p


def expected_failure(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) for a failure a user can act on; None for a bug."""
    import grpc

    from ccgw.client.errors import ClientError, GatewayRefused
    from ccgw.enclave.errors import EnclaveError
    from ccgw.gateway.errors import GatewayError
    from ccgw.verify.errors import MalformedError, PolicyFileError, VerifyError

    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, grpc.aio.AioRpcError):
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            return EXIT_GATEWAY, (
                "cannot reach the gateway (is it running, and do TLS settings match?): "
                f"{exc.details()}"
            )
        return EXIT_GATEWAY, f"the gateway refused the call: {exc.code().name}: {exc.details()}"
    if isinstance(exc, GatewayRefused):
        return EXIT_GATEWAY, f"the gateway refused the call: {exc}"
    if isinstance(exc, ClientError):
        return EXIT_CHECK_FAILED, str(exc)
    if isinstance(exc, PolicyFileError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, MalformedError | VerifyError):
        return EXIT_CHECK_FAILED, str(exc)
    if isinstance(exc, EnclaveError | GatewayError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return EXIT_USAGE, f"{exc.strerror or exc}{':' if where else ''}{where}"
    return None


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["derive-policy"]:  # its own parser (verify.attestation.derive), -h included
        from ccgw.verify.attestation.derive import cli_derive_policy

        return cli_derive_policy(raw[1:])
    args = _parser().parse_args(raw)
    logs.configure(args.log_level or getattr(args, "default_log_level", "INFO"))
    try:
        code: int = args.func(args)
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        known = expected_failure(exc)
        if known is None:
            print(
                f"ccgw {args.cmd}: internal error: {type(exc).__name__}: {exc} "
                "(run again with --debug for the traceback)",
                file=sys.stderr,
            )
            return 70  # EX_SOFTWARE: a bug, not a user error
        code, message = known
        print(f"ccgw {args.cmd}: {message}", file=sys.stderr)
        return code
