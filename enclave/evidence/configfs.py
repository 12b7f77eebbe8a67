"""CPU evidence through the Linux configfs-tsm report interface (/sys/kernel/config/tsm/report,
Linux ≥ 6.7), which serves both SEV-SNP (provider `sev_guest`) and TDX (provider `tdx_guest`).

One attestation: create an entry directory, read its `generation`, write the 64-byte report_data to
`inblob`, read `outblob` (the report or quote), `provider` and `auxblob` (SEV-SNP: the host's
certificate table with VCEK/VLEK, ASK, ARK), then read `generation` again. Each write to an entry
bumps its generation, so a value other than the one our own write produced means another process
wrote to the entry between our write and our read, and the outblob may answer someone else's
report_data: that attempt is discarded (and retried a bounded number of times). The entry is always
removed.

All file access goes through the tiny `TsmFs` interface so tests run against a fake tree.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import struct
import uuid
from typing import Protocol

from ccgw.enclave.errors import EvidenceError
from ccgw.enclave.tee import CpuEvidence
from ccgw.protos.ccgw.v1 import common_pb2 as pb

TSM_REPORT_ROOT = "/sys/kernel/config/tsm/report"
REPORT_DATA_BYTES = 64
OUTBLOB_BYTES_MAX = 64 * 1024
AUXBLOB_BYTES_MAX = 64 * 1024
AUX_CERTS_MAX = 8

PROVIDERS = {"sev_guest": ("sev-snp", pb.SEV_SNP), "tdx_guest": ("tdx", pb.TDX)}

# SEV-SNP certificate table GUIDs (GHCB spec, "SNP Extended Guest Request").
GUID_VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
GUID_VLEK = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
GUID_ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
GUID_ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")


class TsmFs(Protocol):
    """The file operations configfs-tsm needs; paths are absolute strings."""

    def exists(self, path: str) -> bool: ...
    def mkdir(self, path: str) -> None: ...
    def rmdir(self, path: str) -> None: ...
    def read(self, path: str, limit: int) -> bytes: ...
    def write(self, path: str, data: bytes) -> None: ...


class OsFs:
    """The real filesystem."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def mkdir(self, path: str) -> None:
        os.mkdir(path, 0o700)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def read(self, path: str, limit: int) -> bytes:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise EvidenceError(f"configfs-tsm {os.path.basename(path)} exceeds {limit} bytes")
        return data

    def write(self, path: str, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)


def parse_sev_cert_table(aux: bytes) -> tuple[bytes, ...]:
    """SEV-SNP certificate table → DER certificates ordered VCEK/VLEK, ASK, ARK (those present).
    Entries: GUID (16) ‖ offset (u32) ‖ length (u32), ended by an all-zero entry."""
    found: dict[uuid.UUID, bytes] = {}
    off = 0
    for _ in range(AUX_CERTS_MAX + 1):
        if off + 24 > len(aux):
            raise EvidenceError("SEV-SNP certificate table is truncated")
        guid_raw = aux[off : off + 16]
        cert_off, cert_len = struct.unpack_from("<II", aux, off + 16)
        off += 24
        if not any(guid_raw) and cert_off == 0 and cert_len == 0:
            break
        if cert_off + cert_len > len(aux):
            raise EvidenceError("SEV-SNP certificate table entry points outside the table")
        guid = uuid.UUID(bytes=guid_raw)
        if guid not in (GUID_VCEK, GUID_VLEK, GUID_ASK, GUID_ARK):
            guid = uuid.UUID(bytes_le=guid_raw)  # tolerate the mixed-endian EFI_GUID layout
        found[guid] = aux[cert_off : cert_off + cert_len]
    else:
        raise EvidenceError("SEV-SNP certificate table has too many entries")
    signer = found.get(GUID_VLEK) or found.get(GUID_VCEK)
    if signer is None:
        return ()
    return tuple(c for c in (signer, found.get(GUID_ASK), found.get(GUID_ARK)) if c)


class ConfigfsTsm:
    """A CpuTee backed by configfs-tsm."""

    def __init__(
        self,
        fs: TsmFs | None = None,
        root: str = TSM_REPORT_ROOT,
        *,
        privlevel: int | None = None,
        attempts_max: int = 3,
    ) -> None:
        self._fs = fs or OsFs()
        self._root = root
        self._privlevel = privlevel
        self._attempts_max = attempts_max
        self.name = self.probe()

    def _entry(self) -> str:
        return f"{self._root}/ccgw-{secrets.token_hex(8)}"

    def probe(self) -> str:
        """The TEE behind configfs-tsm ("sev-snp" or "tdx"); EvidenceError names what is missing."""
        if not self._fs.exists(self._root):
            raise EvidenceError(
                f"no CPU TEE: {self._root} does not exist (not a SEV-SNP or TDX guest, configfs not "
                "mounted, or a kernel older than 6.7)"
            )
        entry = self._entry()
        self._mkdir(entry)
        try:
            provider = self._fs.read(f"{entry}/provider", 64).decode("ascii", "replace").strip()
        finally:
            self._fs.rmdir(entry)
        if provider not in PROVIDERS:
            raise EvidenceError(f"configfs-tsm provider {provider!r} is not sev_guest or tdx_guest")
        return PROVIDERS[provider][0]

    def _mkdir(self, entry: str) -> None:
        try:
            self._fs.mkdir(entry)
        except OSError as exc:
            why = "permission denied (run as root)" if exc.errno == errno.EACCES else exc.strerror
            raise EvidenceError(f"cannot create configfs-tsm entry {entry}: {why}") from exc

    def _generation(self, entry: str) -> int:
        raw = self._fs.read(f"{entry}/generation", 32).decode("ascii", "replace").strip()
        if not raw.isdigit():
            raise EvidenceError(f"configfs-tsm generation {raw!r} is not a number")
        return int(raw)

    def attest(self, report_data: bytes) -> CpuEvidence:
        if len(report_data) != REPORT_DATA_BYTES:
            raise EvidenceError(f"report_data must be {REPORT_DATA_BYTES} bytes")
        last = ""
        for _ in range(self._attempts_max):
            try:
                return self._attest_once(report_data)
            except _Raced as exc:
                last = str(exc)
        raise EvidenceError(f"configfs-tsm: {last}; gave up after {self._attempts_max} attempts")

    def _attest_once(self, report_data: bytes) -> CpuEvidence:
        entry = self._entry()
        self._mkdir(entry)
        try:
            expected = self._generation(entry)
            if self._privlevel is not None:
                self._fs.write(f"{entry}/privlevel", str(self._privlevel).encode())
                expected += 1
            self._fs.write(f"{entry}/inblob", report_data)
            expected += 1
            outblob = self._fs.read(f"{entry}/outblob", OUTBLOB_BYTES_MAX)
            provider = self._fs.read(f"{entry}/provider", 64).decode("ascii", "replace").strip()
            aux = b""
            if self._fs.exists(f"{entry}/auxblob"):
                try:
                    aux = self._fs.read(f"{entry}/auxblob", AUXBLOB_BYTES_MAX)
                except OSError:
                    aux = b""  # no host-provided certificates (the VCEK must then come from KDS)
            got = self._generation(entry)
            if got != expected:
                raise _Raced(
                    f"entry generation is {got}, expected {expected}: another process wrote to "
                    "the report entry while we used it"
                )
        except OSError as exc:
            raise EvidenceError(f"configfs-tsm report failed: {exc.strerror}") from exc
        finally:
            # A leftover entry holds no secret; failing to remove it must not hide the result.
            with contextlib.suppress(OSError):
                self._fs.rmdir(entry)
        if provider not in PROVIDERS:
            raise EvidenceError(f"configfs-tsm provider {provider!r} is not sev_guest or tdx_guest")
        if not outblob:
            raise EvidenceError("configfs-tsm returned an empty report")
        _, platform = PROVIDERS[provider]
        certs = parse_sev_cert_table(aux) if platform == pb.SEV_SNP and aux else ()
        return CpuEvidence(platform=platform, report=outblob, certs=certs)


class _Raced(Exception):
    pass
