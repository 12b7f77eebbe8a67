"""Group commit: the writes that arrive while one transaction commits go together in the next.

Each write is a function of one transaction (gateway.store.rules). The writer runs a batch of them
in ONE database transaction, each inside its own savepoint: a write the rules refuse is rolled back
to its savepoint and its caller gets the error, the others commit together. One commit (one fsync,
one pass through the log's lock) then serves a whole batch, so the cost per job falls as load rises
instead of every job paying a commit behind one lock. A lone write still runs at once.

A write submitted with `durable=False` (a hold or its release: reservations, never money or the
log) may be committed without waiting for the disk, and only when every write of its batch is
such a write; a batch with any durable write is committed durably, which also makes every earlier
commit durable (the backends' logs are sequential: see ADR 11 for why a lost reservation is safe).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Tx = TypeVar("Tx")


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None


class GroupCommit(Generic[Tx]):
    """`run_batch(fns, durable) -> outcomes` runs in a worker thread; at most `batch_max` writes
    per transaction, one transaction at a time; `durable` is False only when no write of the batch
    asked for durability."""

    def __init__(
        self,
        run_batch: Callable[[list[Callable[[Tx], Any]], bool], list[Outcome]],
        batch_max: int,
    ) -> None:
        self._run_batch, self._batch_max = run_batch, batch_max
        self._queue: list[tuple[Callable[[Tx], Any], asyncio.Future[Any], bool]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, fn: Callable[[Tx], T], durable: bool = True) -> T:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((fn, fut, durable))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        out: T = await asyncio.shield(fut)  # a cancelled caller does not cancel the batch
        return out

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._batch_max], self._queue[self._batch_max :]
            try:
                fns = [fn for fn, _, _ in batch]
                durable = any(d for _, _, d in batch)
                outcomes = await asyncio.to_thread(self._run_batch, fns, durable)
            except BaseException as exc:  # the commit itself failed: every write in it did
                outcomes = [Outcome(error=exc)] * len(batch)
                if not isinstance(exc, Exception):
                    for _, fut, _ in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    raise
            for (_, fut, _), out in zip(batch, outcomes, strict=True):
                if fut.done():
                    continue
                if out.error is not None:
                    fut.set_exception(out.error)
                else:
                    fut.set_result(out.value)

    async def wait_idle(self) -> None:
        if self._writer is not None:
            await asyncio.shield(self._writer)
