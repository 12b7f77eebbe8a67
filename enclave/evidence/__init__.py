"""Real evidence collectors: configfs-tsm for the CPU (SEV-SNP or TDX), NVML for the GPUs.

`detect_real_tee()` returns them, or raises EvidenceError that lists exactly what is missing (no
CPU TEE, GPU confidential computing OFF, …) so a worker in real mode never starts on a machine that
cannot prove what it is. `--simulated-tee` stays the explicit way to run without hardware.
"""

from __future__ import annotations

from typing import Any

from ccgw.enclave.errors import EvidenceError
from ccgw.enclave.evidence.configfs import TSM_REPORT_ROOT, ConfigfsTsm, OsFs, TsmFs
from ccgw.enclave.evidence.nvml import NvmlGpuAttester
from ccgw.enclave.tee import CpuTee, GpuAttester

__all__ = ["ConfigfsTsm", "NvmlGpuAttester", "OsFs", "TsmFs", "detect_real_tee"]


def detect_real_tee(
    *,
    fs: TsmFs | None = None,
    tsm_root: str = TSM_REPORT_ROOT,
    nvml: Any = None,
    require_gpu: bool = True,
) -> tuple[CpuTee, GpuAttester | None]:
    problems: list[str] = []
    cpu: ConfigfsTsm | None = None
    try:
        cpu = ConfigfsTsm(fs, tsm_root)
    except EvidenceError as exc:
        problems.append(str(exc))
    gpu: NvmlGpuAttester | None = None
    if require_gpu:
        if nvml is None:
            try:
                import pynvml

                nvml = pynvml
            except ImportError:
                problems.append("nvidia-ml-py is not installed")
        if nvml is not None:
            try:
                gpu = NvmlGpuAttester(nvml)
                problems.extend(gpu.problems())
            except EvidenceError as exc:
                problems.append(str(exc))
    if problems or cpu is None:
        raise EvidenceError(
            "cannot run in real TEE mode: "
            + "; ".join(problems)
            + " (use --simulated-tee VENDOR_DIR to run without hardware, for development only)"
        )
    return cpu, gpu
