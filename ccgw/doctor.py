"""`ccgw doctor`: what a provider's machine lacks to run an attested worker, one line per check,
each failure with what to fix. Hardware access is injected (configfs-tsm tree, NVML module, the
kernel clock status, the gateway probe) so that the checks run against fakes in tests.

A check that cannot run (no GPU wanted, no gateway given) says SKIP, never OK.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
CLOCK_ERROR_MAX_S = 1.0  # estimated clock error tolerated (evidence and requests allow ±60 s)
TIME_ERROR = 5  # adjtimex(): the clock is not synchronised


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        tail = f" -> fix: {self.fix}" if self.fix and self.status in (FAIL, WARN) else ""
        return f"{self.status:<4}  {self.name:<16} {self.detail}{tail}"


@dataclass(frozen=True)
class ModelArg:
    name: str
    path: Path
    sha256: bytes | None


@dataclass
class Machine:
    """What the checks look at; the defaults are the real machine."""

    tsm_fs: Any = None  # enclave.evidence.TsmFs; None = the real /sys/kernel/config
    tsm_root: str | None = None
    nvml: Any = None  # the pynvml module or a fake; None = import pynvml
    clock: Callable[[], tuple[bool, float]] | None = None  # (synchronised, max error in s)
    gateway_probe: Callable[[], str] | None = None  # returns a status, raises OSError/RuntimeError
    models: Sequence[ModelArg] = field(default_factory=tuple)
    want_gpu: bool = True


def check_cpu_tee(m: Machine) -> Check:
    from ccgw.enclave.errors import EvidenceError
    from ccgw.enclave.evidence.configfs import TSM_REPORT_ROOT, ConfigfsTsm

    try:
        tee = ConfigfsTsm(m.tsm_fs, m.tsm_root or TSM_REPORT_ROOT)
    except EvidenceError as exc:
        return Check(
            FAIL,
            "cpu-tee",
            str(exc),
            "boot this VM as a SEV-SNP or TDX guest on Linux >= 6.7 with configfs mounted "
            "(mount -t configfs none /sys/kernel/config), and run as root",
        )
    return Check(OK, "cpu-tee", f"{tee.name} through configfs-tsm")


def _nvml(m: Machine) -> tuple[Any, Check | None]:
    if m.nvml is not None:
        return m.nvml, None
    try:
        import pynvml

        return pynvml, None
    except ImportError:
        return None, Check(
            FAIL, "nvml", "nvidia-ml-py is not installed", "pip install 'ccgw[worker]'"
        )


def check_gpu(m: Machine) -> list[Check]:
    """GPU present, driver, CC mode, and a real NVML attestation report for a fresh nonce."""
    if not m.want_gpu:
        return [Check(SKIP, "gpu", "not checked (--device cpu)")]
    from ccgw.enclave.errors import EvidenceError
    from ccgw.enclave.evidence.nvml import NvmlGpuAttester

    nvml, missing = _nvml(m)
    if missing is not None:
        return [missing]
    try:
        gpu = NvmlGpuAttester(nvml)
    except EvidenceError as exc:
        return [Check(FAIL, "nvml", str(exc), "install the NVIDIA driver (>= 550) in this VM")]
    out = [Check(OK, "nvml", "NVML initialised")]
    try:
        driver = nvml.nvmlSystemGetDriverVersion()
        driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        out.append(Check(OK, "driver", f"NVIDIA driver {driver}"))
    except (AttributeError, OSError, nvml.NVMLError) as exc:
        out.append(Check(WARN, "driver", f"driver version unknown ({exc})", "update the driver"))
    problems = gpu.problems()
    if problems:
        out.append(
            Check(
                FAIL,
                "gpu-cc",
                "; ".join(problems),
                "turn confidential computing on (nvidia-smi conf-compute -scc on; reboot) on an "
                "H100/H200 passed through to this CVM",
            )
        )
        return out
    st = gpu.status()
    out.append(Check(OK, "gpu-cc", f"{st.gpu_count} GPU(s), confidential computing on"))
    try:
        reports = gpu.attest(os.urandom(32))
    except EvidenceError as exc:
        out.append(
            Check(FAIL, "nvml-attest", str(exc), "check the driver's CC attestation support")
        )
        return out
    out.append(Check(OK, "nvml-attest", f"{len(reports)} GPU report(s) carry a fresh nonce"))
    if not st.ready:
        out.append(
            Check(
                WARN,
                "gpu-ready",
                "GPUs are not set ready for work",
                "after attestation: nvidia-smi conf-compute -srs 1",
            )
        )
    return out


def check_models(m: Machine) -> list[Check]:
    from ccgw.verify.digests import model_dir_sha256
    from ccgw.verify.errors import VerifyError

    if not m.models:
        return [Check(SKIP, "model", "no --model given")]
    out = []
    for spec in m.models:
        name = f"model {spec.name}"
        if not (spec.path / "config.json").is_file():
            out.append(
                Check(
                    FAIL, name, f"{spec.path} has no config.json", "point --model at a model folder"
                )
            )
            continue
        try:
            digest = model_dir_sha256(spec.path)
        except (OSError, VerifyError) as exc:
            out.append(
                Check(FAIL, name, f"cannot read {spec.path}: {exc}", "fix the files' permissions")
            )
            continue
        if spec.sha256 is None:
            out.append(
                Check(
                    WARN,
                    name,
                    f"digest {digest.hex()} is not pinned",
                    f"pin it: --model {spec.name}={spec.path}@{digest.hex()}",
                )
            )
        elif spec.sha256 != digest:
            out.append(
                Check(
                    FAIL,
                    name,
                    f"digest {digest.hex()} differs from the pinned {spec.sha256.hex()}",
                    "restore the pinned weights, or pin the new digest after reviewing them",
                )
            )
        else:
            out.append(Check(OK, name, f"digest {digest.hex()} matches the pin"))
    return out


def check_gateway(m: Machine) -> Check:
    if m.gateway_probe is None:
        return Check(SKIP, "gateway", "no --gateway given")
    try:
        status = m.gateway_probe()
    except (OSError, RuntimeError) as exc:
        return Check(
            FAIL,
            "gateway",
            " ".join(str(exc).split()),
            "check the address, the firewall, and --tls-ca against the gateway's certificate",
        )
    if status != "SERVING":
        return Check(FAIL, "gateway", f"health says {status}", "check the gateway's logs")
    return Check(OK, "gateway", "reachable, health SERVING")


def kernel_clock() -> tuple[bool, float]:
    """(synchronised, estimated max error in seconds) from the kernel's adjtimex(2)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    buf = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 reads only
    state = libc.adjtimex(buf)
    if state < 0:
        raise OSError(ctypes.get_errno(), "adjtimex failed")
    maxerror_us = ctypes.c_long.from_buffer(buf, 24).value  # x86-64/aarch64 layout
    return state != TIME_ERROR, maxerror_us / 1e6


def check_clock(m: Machine) -> Check:
    try:
        synced, err_s = (m.clock or kernel_clock)()
    except OSError as exc:
        return Check(
            WARN,
            "clock",
            f"cannot read the kernel clock status ({exc})",
            "run chrony or systemd-timesyncd",
        )
    if not synced:
        return Check(
            FAIL,
            "clock",
            "the clock is not synchronised (evidence and requests are refused beyond ±60 s skew)",
            "run chrony or systemd-timesyncd and wait for sync",
        )
    if err_s > CLOCK_ERROR_MAX_S:
        return Check(
            WARN, "clock", f"synchronised, but max error {err_s:.1f} s", "check the NTP servers"
        )
    return Check(OK, "clock", f"synchronised, max error {err_s * 1000:.0f} ms")


def run_checks(m: Machine) -> list[Check]:
    return [check_cpu_tee(m), *check_gpu(m), *check_models(m), check_gateway(m), check_clock(m)]
