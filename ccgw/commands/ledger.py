"""Operator ledger commands: deposit, withdraw, settlement statements."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from ccgw.commands._common import Subparsers


def register(sub: Subparsers) -> None:
    for name, help_ in (
        ("deposit", "credit an account (admin, on the gateway's database)"),
        ("withdraw", "debit an account (admin, on the gateway's database)"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--db", type=Path, required=True, help="the gateway's SQLite file")
        p.add_argument("--account", required=True, help="e.g. client:alice")
        p.add_argument("--amount-micro", type=int, required=True, help="amount in µtokens")
        p.add_argument("--transfer-id", required=True, help="unique id; repeating it is a no-op")
        p.set_defaults(func=_deposit if name == "deposit" else _withdraw)

    se = sub.add_parser("settlement", help="export a signed per-provider settlement for an epoch")
    se.add_argument("--db", type=Path, required=True, help="the gateway's SQLite file")
    se.add_argument("--log-key", type=Path, required=True, help="the gateway's log key")
    se.add_argument("--from-size", type=int, required=True, help="log size the epoch starts at")
    se.add_argument("--to-size", type=int, required=True, help="a signed checkpoint size")
    se.add_argument(
        "--log-origin", default="ccgw.local/log", help="origin line of the gateway's checkpoints"
    )
    se.set_defaults(func=_settlement)


def _deposit(args: argparse.Namespace) -> int:
    from ccgw.gateway.store.sqlite import SqliteStore

    async def run() -> None:
        store = SqliteStore(args.db)
        await store.deposit(args.account, args.amount_micro, args.transfer_id)
        print(f"{args.account}: {await store.balance(args.account)}")
        await store.close()

    asyncio.run(run())
    return 0


def _withdraw(args: argparse.Namespace) -> int:
    from ccgw.gateway.store.sqlite import SqliteStore

    async def run() -> None:
        store = SqliteStore(args.db)
        await store.withdraw(args.account, args.amount_micro, args.transfer_id)
        print(f"{args.account}: {await store.balance(args.account)}")
        await store.close()

    asyncio.run(run())
    return 0


def _settlement(args: argparse.Namespace) -> int:
    from ccgw.gateway.config import GatewayConfig
    from ccgw.gateway.settlement import export
    from ccgw.gateway.store.sqlite import SqliteStore
    from ccgw.keys import load_private

    async def run() -> None:
        store = SqliteStore(args.db)
        try:
            print(
                await export(
                    store,
                    GatewayConfig(log_origin=args.log_origin),
                    load_private(args.log_key),
                    args.from_size,
                    args.to_size,
                )
            )
        finally:
            await store.close()

    asyncio.run(run())
    return 0
