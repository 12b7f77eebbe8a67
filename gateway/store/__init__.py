"""Durable state of the gateway behind one interface (base.Store): SQLite by default."""

from ccgw.gateway.store.base import SettleResult, Store

__all__ = ["SettleResult", "Store"]
