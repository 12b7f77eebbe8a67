"""What every `ccgw` command shares: the one CLI error type, exit codes, file reading with a clear
message, the policy/roots a verifying command starts from, and a gRPC channel to a gateway.

Exit codes (documented in `ccgw --help`):
  0  success
  1  a check failed: an audit discrepancy, refused evidence, an enforced check that failed
  2  usage or input error: bad flags, a missing or malformed file, a bad token or policy
  3  the gateway is unreachable or misbehaving (refused the call, sent what does not parse)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_GATEWAY = 3

# argparse's _SubParsersAction is private; commands only call add_parser on it.
Subparsers = Any


class CliError(Exception):
    """An expected failure: printed as one line `ccgw <command>: <message>`, exit `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise CliError(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror}") from None


def read_text(path: Path, what: str) -> str:
    try:
        return read_bytes(path, what).decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CliError(f"{what} {path} is not UTF-8 text") from None


def read_token(path: Path, role: str, *also: str) -> str:
    """A token file as `ccgw token` writes it: a JWT whose subject names the account and whose
    role is `role` (or one of `also`). Only its shape is checked here: the gateway verifies it."""
    import jwt

    token = read_text(path, f"{role} token")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise CliError(
            f"{role} token {path} is not a token (make one with `ccgw token --role {role}`)"
        ) from None
    if not isinstance(claims.get("sub"), str) or claims.get("role") not in (role, *also):
        raise CliError(
            f"{path} is not a {role} token (it says role {claims.get('role')!r}; "
            f"make one with `ccgw token --role {role}`)"
        )
    return token


def load_private_key(path: Path, what: str) -> Any:
    """An Ed25519 private key file from `ccgw keygen`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(read_bytes(path, what), None)
    except (ValueError, TypeError):
        raise CliError(f"{what} {path} is not a PEM private key (make one: ccgw keygen)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CliError(f"{what} {path} is not an Ed25519 key (make one: ccgw keygen)")
    return key


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def policy_and_roots(policy_file: Path | None, sim_root: Path | None) -> tuple[Any, Any]:
    from ccgw.verify.attestation.policy import Policy, load_policy_file
    from ccgw.verify.attestation.roots import RootStore

    policy = load_policy_file(policy_file) if policy_file else Policy()
    roots = RootStore.default()
    if sim_root is not None:
        warn("accepting the SIMULATED TEE root: no hardware protection")
        pem = read_bytes(sim_root, "simulated root")
        policy, roots = policy.allowing_simulated(), roots.with_simulated(pem)
    return policy, roots


def channel(address: str, tls_ca: Path | None) -> grpc.aio.Channel:
    import grpc

    if tls_ca is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=read_bytes(tls_ca, "TLS CA"))
        return grpc.aio.secure_channel(address, creds)
    return grpc.aio.insecure_channel(address)


async def until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def add_tls_ca(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls-ca", type=Path, default=None, help="CA certificate (PEM) of the gateway's TLS"
    )


def add_simulated_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-simulated-tee",
        type=Path,
        metavar="ROOT_PEM",
        default=None,
        help="ALSO accept the SIMULATED TEE whose root is ROOT_PEM (development only)",
    )
