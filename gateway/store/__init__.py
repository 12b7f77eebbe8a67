"""Durable state of the gateway behind one interface (base.Store): SQLite by default."""

from gateway.store.base import SettleResult, Store

__all__ = ["SettleResult", "Store"]
