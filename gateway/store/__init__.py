"""Durable state of the gateway behind one interface (base.Store): the log of entries, the ledger
view derived from it, and hold reservations; SQLite by default, PostgreSQL for replicas."""

from ccgw.gateway.store.base import AppendResult, SettleResult, Store
from ccgw.gateway.store.factory import open_store

__all__ = ["AppendResult", "SettleResult", "Store", "open_store"]
