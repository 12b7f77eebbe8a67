"""The direct-boot inputs that a launch measurement covers besides the firmware: the kernel, the
initrd and the kernel command line (what QEMU passes with -kernel/-initrd/-append).

The kernel is held in memory (the TDX measurement hashes a patched copy of it); the initrd is only
ever digested, so `read_kernel_boot` streams it from disk. Sizes are bounded by verify.limits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ccgw.verify import limits
from ccgw.verify.errors import LimitError, MalformedError

_READ_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class KernelBoot:
    kernel: bytes
    initrd_sha256: bytes
    initrd_sha384: bytes
    initrd_bytes: int  # 0 when there is no initrd
    cmdline: str

    def __post_init__(self) -> None:
        check_cmdline(self.cmdline)
        if len(self.kernel) > limits.KERNEL_BYTES_MAX:
            raise LimitError(f"kernel is {len(self.kernel)} bytes; limit {limits.KERNEL_BYTES_MAX}")
        if not self.kernel:
            raise MalformedError("kernel is empty")
        if not 0 <= self.initrd_bytes <= limits.INITRD_BYTES_MAX:
            raise LimitError(
                f"initrd is {self.initrd_bytes} bytes; limit {limits.INITRD_BYTES_MAX}"
            )
        if len(self.initrd_sha256) != 32 or len(self.initrd_sha384) != 48:
            raise MalformedError("initrd digests must be SHA-256 and SHA-384")

    @property
    def kernel_sha256(self) -> bytes:
        return hashlib.sha256(self.kernel).digest()


def check_cmdline(cmdline: str) -> None:
    raw = cmdline.encode("utf-8", "strict")
    if len(raw) > limits.KERNEL_CMDLINE_BYTES_MAX:
        raise LimitError(
            f"kernel command line is {len(raw)} bytes; limit {limits.KERNEL_CMDLINE_BYTES_MAX}"
        )
    if "\x00" in cmdline or not cmdline.isprintable():
        raise MalformedError("kernel command line holds a NUL or another unprintable character")


def kernel_boot(kernel: bytes, initrd: bytes | None, cmdline: str) -> KernelBoot:
    data = initrd or b""
    return KernelBoot(
        kernel=kernel,
        initrd_sha256=hashlib.sha256(data).digest(),
        initrd_sha384=hashlib.sha384(data).digest(),
        initrd_bytes=len(data),
        cmdline=cmdline,
    )


def read_kernel_boot(kernel: Path, initrd: Path | None, cmdline: str) -> KernelBoot:
    if kernel.stat().st_size > limits.KERNEL_BYTES_MAX:
        raise LimitError(f"kernel {kernel} exceeds {limits.KERNEL_BYTES_MAX} bytes")
    h256, h384, size = hashlib.sha256(), hashlib.sha384(), 0
    if initrd is not None:
        with initrd.open("rb") as f:
            while block := f.read(_READ_BYTES):
                size += len(block)
                if size > limits.INITRD_BYTES_MAX:
                    raise LimitError(f"initrd {initrd} exceeds {limits.INITRD_BYTES_MAX} bytes")
                h256.update(block)
                h384.update(block)
    return KernelBoot(
        kernel=kernel.read_bytes(),
        initrd_sha256=h256.digest(),
        initrd_sha384=h384.digest(),
        initrd_bytes=size,
        cmdline=cmdline,
    )
