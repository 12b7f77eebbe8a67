"""Fakes of the hardware interfaces the worker collects evidence from: a configfs-tsm tree and
the pynvml module. Test-only: the trusted worker code carries neither."""

from __future__ import annotations

import errno
import struct
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from ccgw.enclave.evidence.configfs import GUID_ARK, GUID_ASK, GUID_VCEK


def cert_table(certs: dict[uuid.UUID, bytes]) -> bytes:
    header_len = 24 * (len(certs) + 1)
    head, body = b"", b""
    for guid, der in certs.items():
        head += guid.bytes + struct.pack("<II", header_len + len(body), len(der))
        body += der
    return head + bytes(24) + body


class FakeTsm:
    """An in-memory /sys/kernel/config/tsm/report. `make_report(inblob) -> outblob`; `racer` is
    called after each inblob write and may write to the entry itself (another process)."""

    def __init__(
        self,
        provider: str,
        make_report: Callable[[bytes], bytes],
        aux: bytes = b"",
        root: str = "/tsm/report",
    ) -> None:
        self.root, self.provider, self.make_report, self.aux = root, provider, make_report, aux
        self.entries: dict[str, dict[str, Any]] = {}
        self.racer: Callable[[FakeTsm, str], None] | None = None
        self.removed: list[str] = []

    def exists(self, path: str) -> bool:
        if path == self.root:
            return True
        entry, _, attr = path.rpartition("/")
        return entry in self.entries and (attr != "auxblob" or bool(self.aux))

    def mkdir(self, path: str) -> None:
        if path.rpartition("/")[0] != self.root:
            raise OSError(errno.ENOENT, "no such directory")
        self.entries[path] = {"generation": 0, "inblob": b""}

    def rmdir(self, path: str) -> None:
        self.entries.pop(path)
        self.removed.append(path)

    def read(self, path: str, limit: int) -> bytes:
        entry, _, attr = path.rpartition("/")
        e = self.entries[entry]
        if attr == "generation":
            return f"{e['generation']}\n".encode()
        if attr == "provider":
            return f"{self.provider}\n".encode()
        if attr == "outblob":
            return self.make_report(e["inblob"])
        if attr == "auxblob":
            return self.aux
        raise OSError(errno.ENOENT, attr)

    def write(self, path: str, data: bytes) -> None:
        entry, _, attr = path.rpartition("/")
        e = self.entries[entry]
        e[attr] = data
        e["generation"] += 1
        if attr == "inblob" and self.racer is not None:
            self.racer(self, entry)


class NVMLError(Exception):
    pass


def fake_pynvml(
    *,
    gpus: int = 1,
    cc_on: bool = True,
    capable: bool = True,
    devtools: bool = False,
    init_fails: bool = False,
    attester: Any = None,
) -> SimpleNamespace:
    """A module-like object with the pynvml functions and constants the attester uses."""

    def init() -> None:
        if init_fails:
            raise NVMLError("NVML Shared Library Not Found")

    def report(handle: int, nonce: bytes) -> SimpleNamespace:
        ev = attester.attest(bytes(nonce))[0]
        buf = ev.report + bytes(0x2000 - len(ev.report))
        return SimpleNamespace(attestationReport=buf, attestationReportSize=len(ev.report))

    def cert(handle: int) -> SimpleNamespace:
        chain = attester.chain
        return SimpleNamespace(
            attestationCertChain=chain + bytes(64), attestationCertChainSize=len(chain)
        )

    return SimpleNamespace(
        NVMLError=NVMLError,
        NVML_CC_SYSTEM_GPUS_CC_CAPABLE=1,
        NVML_CC_SYSTEM_FEATURE_ENABLED=1,
        NVML_CC_SYSTEM_DEVTOOLS_MODE_ON=1,
        nvmlInit=init,
        nvmlDeviceGetCount=lambda: gpus,
        nvmlSystemGetConfComputeCapabilities=lambda: SimpleNamespace(
            cpuCaps=3, gpusCaps=int(capable)
        ),
        nvmlSystemGetConfComputeState=lambda: SimpleNamespace(
            environment=2, ccFeature=int(cc_on), devToolsMode=int(devtools)
        ),
        nvmlSystemGetConfComputeGpusReadyState=lambda: 0,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetConfComputeGpuAttestationReport=report,
        nvmlDeviceGetConfComputeGpuCertificate=cert,
        nvmlDeviceGetArchitecture=lambda h: 9,
    )


__all__ = ["GUID_ARK", "GUID_ASK", "GUID_VCEK", "FakeTsm", "cert_table", "fake_pynvml"]
