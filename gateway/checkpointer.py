"""Signs checkpoints of the receipt log: at most `checkpoint_every_entries` entries or
`checkpoint_interval_s` seconds after the last one, with the gateway's Ed25519 log key."""

from __future__ import annotations

import asyncio

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ccgw.gateway.config import GatewayConfig
from ccgw.gateway.store.base import Store
from ccgw.verify import checkpoint, merkle

log = structlog.get_logger("gateway.checkpointer")


class Checkpointer:
    def __init__(self, config: GatewayConfig, store: Store, key: Ed25519PrivateKey) -> None:
        self._config, self._store, self._key = config, store, key
        self._lock = asyncio.Lock()
        self.public_raw = key.public_key().public_bytes_raw()

    async def maybe_sign(self, force: bool = False) -> None:
        """Sign the current tree if enough entries (or, with force, any) are unsigned."""
        async with self._lock:
            size = await self._store.log_size()
            latest = await self._store.latest_checkpoint()
            signed = latest[0] if latest else -1
            if size == signed or (
                not force and size - max(signed, 0) < self._config.limits.checkpoint_every_entries
            ):
                return
            root = merkle.root(await self._store.leaf_hashes(size))
            text = checkpoint.sign(
                checkpoint.Checkpoint(self._config.log_origin, size, root),
                self._key,
                self._config.log_key_name,
            )
            await self._store.add_checkpoint(size, text)
            log.info("checkpoint_signed", size=size, root=root.hex())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._config.limits.checkpoint_interval_s)
            await self.maybe_sign(force=True)
