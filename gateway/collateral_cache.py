"""The gateway's collateral cache: vendor collateral (CRLs; Intel TDX TCB info, QE identity and
their issuer chain) kept as files in one directory, reloaded when the files change, used by the
gateway's own verifier and handed to clients with the evidence (ListWorkers, ChallengeWorker).

The gateway is untrusted and so is this cache: every item is signed by its vendor and clients verify
it to their own pinned roots; serving stale or no collateral only turns checks into skips. Filling
the directory (cron + curl from AMD KDS, Intel PCS, NVIDIA) is an operator's job; nothing here
reaches the network. The directory is rescanned at most every `refresh_s`, and only re-read when a
file's name, size or modification time changed; a directory that cannot be read keeps the last
good contents (and is logged).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import structlog

from ccgw.protos.ccgw.v1 import collateral_pb2 as colpb
from ccgw.verify.attestation.supplied import Collateral, load_collateral_dir
from ccgw.verify.errors import VerifyError

log = structlog.get_logger("gateway.collateral")


class CollateralCache:
    def __init__(
        self,
        directory: Path | None,
        refresh_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dir, self._refresh_s, self._clock = directory, refresh_s, clock
        self._checked_at: float | None = None
        self._stamp: tuple[tuple[str, int, int], ...] = ()
        self._current: Collateral | None = None
        self._proto = colpb.Collateral()

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        assert self._dir is not None
        return tuple(
            sorted(
                (p.name, p.stat().st_size, p.stat().st_mtime_ns)
                for p in self._dir.iterdir()
                if p.is_file()
            )
        )

    def _refresh(self) -> None:
        now = self._clock()
        if self._dir is None or (
            self._checked_at is not None and now - self._checked_at < self._refresh_s
        ):
            return
        self._checked_at = now
        try:
            stamp = self._scan()
            if stamp == self._stamp and self._current is not None:
                return
            loaded = load_collateral_dir(self._dir, source="gateway")
        except (OSError, VerifyError) as exc:
            log.warning("collateral_unreadable", directory=str(self._dir), error=str(exc))
            return
        self._stamp, self._current, self._proto = stamp, loaded, loaded.to_proto()
        log.info(
            "collateral_loaded",
            crls=len(loaded.crls),
            tdx_tcb_infos=len(loaded.tdx_tcb_infos),
            tdx_qe_identities=len(loaded.tdx_qe_identities),
            bytes=self._proto.ByteSize(),
        )

    def current(self) -> Collateral | None:
        self._refresh()
        return self._current

    def proto(self) -> colpb.Collateral:
        self._refresh()
        return self._proto
