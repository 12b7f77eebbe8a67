"""Operator and account-holder ledger commands (ADR 12). Every `--db` is an SQLite path or a
postgresql:// DSN, opened through the one store factory; only `init-db` creates a database.

  init-db         create a new database owned by the log key
  deposit         log an operator-signed deposit naming its external reference
  prices          log an operator-signed price schedule, in force from a log index on
  account-key     sign (holder) and/or log a withdrawal key for an account
  withdraw        sign (holder) and/or log a withdrawal under the account's key
  settlement      export a signed per-provider statement for an epoch
  rebuild-ledger  recompute the ledger view and the Merkle nodes from the log entries
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from ccgw.commands._common import (
    EXIT_CHECK_FAILED,
    EXIT_GATEWAY,
    EXIT_USAGE,
    CliError,
    Subparsers,
    read_bytes,
)

T = TypeVar("T")


def _db(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--db", required=required, help="the gateway's database: SQLite file or postgresql://…"
    )
    p.add_argument("--db-schema", default="ccgw", help="PostgreSQL schema (with postgresql://)")


def _log_key(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--log-key", type=Path, required=True, help=f"the log key (Ed25519), {what}")


def _money(p: argparse.ArgumentParser) -> None:
    p.add_argument("--account", required=True, help="e.g. client:alice")
    p.add_argument("--amount-micro", type=int, required=True, help="amount in µtokens")
    p.add_argument(
        "--reference", "--transfer-id", required=True, help="unique reference; repeating is a no-op"
    )


def register(sub: Subparsers) -> None:
    p = sub.add_parser("init-db", help="create a new gateway database owned by the log key")
    _db(p)
    _log_key(p, "whose public key owns the database")
    p.set_defaults(func=_init_db)

    p = sub.add_parser("deposit", help="credit an account (operator-signed, logged)")
    _db(p)
    _log_key(p, "which signs deposits")
    _money(p)
    p.set_defaults(func=_deposit)

    p = sub.add_parser("prices", help="log a new price schedule (operator-signed)")
    _db(p)
    _log_key(p, "which signs price schedules")
    p.add_argument("--default", required=True, metavar="IN,OUT", help="µtokens per 1k tokens")
    p.add_argument(
        "--model", action="append", default=[], metavar="NAME=IN,OUT", help="a model's own price"
    )
    p.add_argument("--fee-bps", type=int, default=500, help="network fee share, basis points")
    p.add_argument("--fee-account", default="network:fee", help="the account the fee goes to")
    p.add_argument("--from-index", type=int, default=None, help="default: the next log index")
    p.set_defaults(func=_prices)

    p = sub.add_parser("account-key", help="bind a withdrawal key to an account (holder-signed)")
    _holder(p)
    p.add_argument("--previous-key", type=Path, default=None, help="the key it replaces")
    p.set_defaults(func=_account_key)

    p = sub.add_parser("withdraw", help="debit an account (signed by the account's key)")
    _holder(p)
    p.add_argument("--amount-micro", type=int, default=None, help="amount in µtokens")
    p.add_argument("--reference", "--transfer-id", default=None, help="unique per account")
    p.set_defaults(func=_withdraw)

    se = sub.add_parser("settlement", help="export a signed per-provider settlement for an epoch")
    _db(se)
    _log_key(se, "which signs the statement")
    se.add_argument("--from-size", type=int, required=True, help="log size the epoch starts at")
    se.add_argument("--to-size", type=int, required=True, help="a signed checkpoint size")
    se.add_argument(
        "--log-origin", default="ccgw.local/log", help="origin line of the gateway's checkpoints"
    )
    se.set_defaults(func=_settlement)

    p = sub.add_parser("rebuild-ledger", help="recompute the ledger view from the log (offline)")
    _db(p)
    p.set_defaults(func=_rebuild)


def _holder(p: argparse.ArgumentParser) -> None:
    _db(p, required=False)
    p.add_argument("--account", default=None, help="e.g. client:alice")
    p.add_argument("--key", type=Path, default=None, help="the account holder's key (signs)")
    p.add_argument("--request", type=Path, default=None, help="a request signed elsewhere")
    p.add_argument("--out", type=Path, default=None, help="write the signed request, log nothing")


# -- helpers ---------------------------------------------------------------------------------------


def _private(path: Path, what: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(read_bytes(path, what), None)
    except (ValueError, TypeError):
        raise CliError(f"{what} {path} is not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CliError(f"{what} {path} is not an Ed25519 key")
    return key


def _open(args: argparse.Namespace, operator: bytes | None = None, create: bool = False) -> Any:
    from ccgw.gateway.store.factory import open_store

    try:
        return open_store(args.db, schema=args.db_schema, operator=operator, create=create)
    except ImportError:
        raise CliError("PostgreSQL needs `pip install -e '.[postgres]'`") from None
    except Exception as exc:
        if type(exc).__module__.startswith("psycopg"):
            raise CliError(f"cannot reach the database: {exc}".strip(), EXIT_GATEWAY) from None
        raise


def _with_store(
    args: argparse.Namespace, fn: Callable[[Any], Awaitable[T]], operator: bytes | None = None
) -> T:
    from ccgw.gateway.errors import BadRequest, GatewayError, NotFound

    async def run() -> T:
        store = _open(args, operator)
        try:
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (NotFound, BadRequest) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except GatewayError as exc:  # the rules refused it: a check failed
        raise CliError(str(exc), EXIT_CHECK_FAILED) from None


def _append(args: argparse.Namespace, entry: Any, operator: bytes | None = None) -> int:
    async def fn(store: Any) -> int:
        res = await store.append(entry)
        what = "already logged at" if res.already_logged else "logged at"
        print(f"{entry.kind} {what} index {res.log_index}")
        return 0

    return _with_store(args, fn, operator)


def _verify_entry(entry: Any) -> Any:
    from ccgw.verify import log_entries as le
    from ccgw.verify.errors import MalformedError

    try:
        return le.parse(entry)
    except MalformedError as exc:
        raise CliError(f"the request does not parse: {exc}") from None


# -- commands --------------------------------------------------------------------------------------


def _init_db(args: argparse.Namespace) -> int:
    pub = _private(args.log_key, "log key").public_key().public_bytes_raw()

    async def run() -> None:
        store = _open(args, pub, create=True)
        await store.close()

    asyncio.run(run())
    print(f"database ready: {args.db}")
    return 0


def _deposit(args: argparse.Namespace) -> int:
    from ccgw.verify import log_entries as le
    from ccgw.verify.errors import MalformedError

    key = _private(args.log_key, "log key")
    try:
        entry = le.deposit(key, args.account, args.amount_micro, args.reference)
    except MalformedError as exc:
        raise CliError(str(exc)) from None
    code = _append(args, entry, key.public_key().public_bytes_raw())

    async def show(store: Any) -> None:
        print(f"{args.account}: available, held = {await store.balance(args.account)}")

    _with_store(args, show)
    return code


def _price(spec: str, what: str) -> Any:
    from ccgw.verify.prices import Price

    a, _, b = spec.partition(",")
    try:
        return Price(int(a), int(b))
    except ValueError:
        raise CliError(f"{what} {spec!r}: expected IN,OUT micro-tokens per 1k tokens") from None


def _prices(args: argparse.Namespace) -> int:
    from ccgw.verify import log_entries as le
    from ccgw.verify.errors import MalformedError
    from ccgw.verify.prices import PriceSchedule

    key = _private(args.log_key, "log key")
    models = {}
    for spec in args.model:
        name, eq, price = spec.partition("=")
        if not eq or not name:
            raise CliError(f"--model {spec!r}: expected NAME=IN,OUT")
        models[name] = _price(price, "--model")

    async def fn(store: Any) -> int:
        start = args.from_index if args.from_index is not None else await store.log_size()
        try:
            schedule = PriceSchedule(
                _price(args.default, "--default"),
                tuple(sorted(models.items())),
                args.fee_bps,
                args.fee_account,
                start,
            )
            entry = le.price_schedule(key, schedule)
        except MalformedError as exc:
            raise CliError(str(exc)) from None
        res = await store.append(entry)
        print(f"price schedule logged at index {res.log_index}, in force from {start}")
        return 0

    return _with_store(args, fn, key.public_key().public_bytes_raw())


def _signed_request(args: argparse.Namespace, build: Callable[[], Any]) -> int:
    """Holder side (--key: sign, --out: write it) and/or operator side (--db: log it)."""
    from ccgw.verify import log_entries as le

    if args.request is not None:
        try:
            raw = json.loads(read_bytes(args.request, "request"))
            entry = le.Entry(str(raw["kind"]), le.canonical(raw["body"]))
        except (ValueError, KeyError, TypeError):
            raise CliError(f"{args.request} is not a signed request") from None
        _verify_entry(entry)
    elif args.key is not None and args.account:
        entry = build()
    else:
        raise CliError("give --request FILE, or --key and --account to sign here")
    if args.out is not None:
        body = json.loads(entry.body)
        args.out.write_text(json.dumps({"kind": entry.kind, "body": body}, indent=1) + "\n")
        print(f"signed {entry.kind} request written to {args.out}")
    if args.db is not None:
        return _append(args, entry)
    if args.out is None:
        raise CliError("give --db to log it or --out to hand it to the operator")
    return 0


def _account_key(args: argparse.Namespace) -> int:
    from ccgw.verify import log_entries as le
    from ccgw.verify.errors import MalformedError

    def build() -> Any:
        prev = _private(args.previous_key, "previous key") if args.previous_key else None
        try:
            return le.account_key(_private(args.key, "account key"), args.account, prev)
        except MalformedError as exc:
            raise CliError(str(exc)) from None

    return _signed_request(args, build)


def _withdraw(args: argparse.Namespace) -> int:
    from ccgw.verify import log_entries as le
    from ccgw.verify.errors import MalformedError

    def build() -> Any:
        if args.amount_micro is None or args.reference is None:
            raise CliError("signing a withdrawal needs --amount-micro and --reference")
        try:
            return le.withdrawal(
                _private(args.key, "account key"), args.account, args.amount_micro, args.reference
            )
        except MalformedError as exc:
            raise CliError(str(exc)) from None

    return _signed_request(args, build)


def _settlement(args: argparse.Namespace) -> int:
    from ccgw.gateway.settlement import export

    key = _private(args.log_key, "log key")

    async def fn(store: Any) -> int:
        print(await export(store, key, args.log_origin, args.from_size, args.to_size))
        return 0

    return _with_store(args, fn, key.public_key().public_bytes_raw())


def _rebuild(args: argparse.Namespace) -> int:
    async def fn(store: Any) -> int:
        n = await store.rebuild_view()
        print(f"ledger view rebuilt from {n} log entries")
        return 0

    return _with_store(args, fn)
