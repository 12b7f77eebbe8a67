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


# The most any command reads of one input file into memory (keys, tokens, certificates, evidence,
# policies, release documents, firmware images): bounds a mistaken or hostile path (/dev/zero).
CLI_FILE_BYTES_MAX = 64 * 1024 * 1024


def read_bytes(path: Path, what: str, max_bytes: int = CLI_FILE_BYTES_MAX) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise CliError(f"{what} {path} is larger than {max_bytes // (1024 * 1024)} MiB")
        return data
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


UNRELEASED_FLAG = "--accept-unreleased-software"
NO_RELEASE_KEY = (
    "no release key: pass --release-key RELEASE_PUB --log-pubkey LOG_PUB (trust workers that run "
    f"released software), or --policy FILE, or {UNRELEASED_FLAG} (accept ANY software, loudly)"
)


def add_release_trust(
    p: argparse.ArgumentParser, log_key: bool = True, log_state: bool = True
) -> None:
    """--release-key / --accept-unreleased-software (and, for clients, the log they follow)."""
    p.add_argument(
        "--release-key",
        type=Path,
        default=None,
        help="release public key (PEM): trust workers only under releases it signed, in the log "
        "(the default path; see `ccgw release`)",
    )
    if log_key:
        p.add_argument(
            "--log-pubkey",
            type=Path,
            default=None,
            help="the gateway's log key (PEM): releases count only under checkpoints it signed",
        )
        p.add_argument("--log-name", default="ccgw-log", help="key name in the checkpoints")
        p.add_argument(
            "--log-origin",
            default="ccgw.local/log",
            help="origin line of the gateway's checkpoints",
        )
    if log_key and log_state:
        p.add_argument(
            "--log-state",
            type=Path,
            default=None,
            help="keep the last log checkpoint verified here between runs: a log forked or rolled "
            "back since is refused",
        )
    p.add_argument(
        UNRELEASED_FLAG,
        dest="accept_unreleased_software",
        action="store_true",
        help="accept workers running software that is in NO release (warned on every use and "
        "shown in every attestation report)",
    )


def warn_unreleased() -> None:
    warn(
        f"{UNRELEASED_FLAG}: workers are NOT checked against any release; any software the "
        "hardware attests is accepted"
    )


def log_public_raw(path: Path) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        pub = load_pem_public_key(read_bytes(path, "log public key"))
    except ValueError:
        raise CliError(f"{path} is not a PEM public key") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise CliError(f"log key {path} must be Ed25519")
    return pub.public_bytes_raw()


def release_key(path: Path) -> Any:
    from ccgw.verify.errors import VerifyError
    from ccgw.verify.release.manifest import load_release_key

    try:
        return load_release_key(read_bytes(path, "release public key"))
    except VerifyError as exc:
        raise CliError(f"release key {path}: {exc}") from None


def release_trust(args: argparse.Namespace, policy: Any) -> tuple[Any, Any]:
    """(policy, ReleaseTrust | None) for a verifying command: follow the releases of
    --release-key in the log of --log-pubkey; or, loudly, accept unreleased software; or use the
    --policy file's pins. Neither: one line saying what to pass."""
    import dataclasses

    if args.release_key is not None:
        from ccgw.client.releases import LogIdentity, ReleaseTrust

        if getattr(args, "log_pubkey", None) is None:
            raise CliError(
                "--release-key needs --log-pubkey LOG_PUB: releases count only under a "
                "checkpoint signed by the gateway's log key"
            )
        log = LogIdentity(args.log_name, log_public_raw(args.log_pubkey), args.log_origin)
        trust = ReleaseTrust(
            (release_key(args.release_key),), log, getattr(args, "log_state", None)
        )
        if trust.state_path is not None:
            from ccgw.client.releases import load_state

            try:
                load_state(trust.state_path, log)
            except ValueError as exc:
                raise CliError(str(exc)) from None
        return policy, trust
    if args.accept_unreleased_software:
        warn_unreleased()
        return dataclasses.replace(policy, accept_unreleased=True), None
    if getattr(args, "policy", None) is not None:
        if not policy.pins_software:
            raise CliError(
                f"policy {args.policy} pins no launch measurement (allowed_measurements); "
                + NO_RELEASE_KEY
            )
        return policy, None
    raise CliError(NO_RELEASE_KEY)


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
