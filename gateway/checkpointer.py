"""Signs checkpoints of the log: at most `checkpoint_every_entries` entries or
`checkpoint_interval_s` seconds after the last one, with the gateway's Ed25519 log key.

The root comes from the stored frontier (O(log n), in the store's thread), never from the leaves;
after a settle, `maybe_sign(size)` decides from memory whether anything is due, so a job costs no
extra database read here.
"""

from __future__ import annotations

import asyncio

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.store.base import Store
from ccgw.verify import checkpoint

log = structlog.get_logger("gateway.checkpointer")


class Checkpointer:
    def __init__(self, config: GatewayConfig, store: Store, key: Ed25519PrivateKey) -> None:
        self._config, self._store, self._key = config, store, key
        self._lock = asyncio.Lock()
        self._signed = -1  # latest size this process knows is signed; -1: not read yet
        self.public_raw = key.public_key().public_bytes_raw()

    @property
    def key(self) -> Ed25519PrivateKey:
        return self._key

    async def maybe_sign(self, size: int | None = None, force: bool = False) -> None:
        """Sign the current tree if enough entries (or, with force, any) are unsigned. `size` is a
        log size the caller just saw (after its own append): nothing is read when none is due."""
        every = self._config.limits.checkpoint_every_entries
        if not force and size is not None and self._signed >= 0 and size - self._signed < every:
            return
        async with self._lock:
            if self._signed < 0:
                latest = await self._store.latest_checkpoint()
                self._signed = latest[0] if latest else 0
                if latest is None:
                    force = True
            n, root = await self._store.log_head()
            if n == self._signed and not (force and await self._store.checkpoint(n) is None):
                return
            if not force and n - self._signed < every:
                return
            text = checkpoint.sign(
                checkpoint.Checkpoint(self._config.log_origin, n, root),
                self._key,
                self._config.log_key_name,
            )
            await self._store.add_checkpoint(n, text)
            self._signed = max(self._signed, n)
            log.info("checkpoint_signed", size=n, root=root.hex())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._config.limits.checkpoint_interval_s)
            await self.maybe_sign(force=True)
