"""Heartbeat load and device telemetry: NVML utilisation and memory where a GPU is present; on a
CPU-only machine the heartbeat says so (gpu_present=false)."""

from __future__ import annotations

from typing import Any

from ccgw.protos.ccgw.v1 import worker_pb2 as wpb


class Telemetry:
    def __init__(self, device: str, nvml: Any | None = None) -> None:
        self._device = device
        self._nvml = nvml
        if nvml is None and device.startswith("cuda"):
            try:
                import pynvml  # nvidia-ml-py

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception:  # noqa: BLE001 - NVML absent or failing: report no GPU telemetry
                self._nvml = None

    def heartbeat(self, in_flight: int, capacity: int) -> wpb.Heartbeat:
        hb = wpb.Heartbeat(in_flight=in_flight, capacity=capacity, device=self._device)
        if self._nvml is None:
            hb.gpu_present = False
            return hb
        hb.gpu_present = True
        n = self._nvml
        for i in range(n.nvmlDeviceGetCount()):
            h = n.nvmlDeviceGetHandleByIndex(i)
            util = n.nvmlDeviceGetUtilizationRates(h)
            mem = n.nvmlDeviceGetMemoryInfo(h)
            hb.gpus.append(
                wpb.GpuTelemetry(
                    index=i,
                    utilization_pct=int(util.gpu),
                    memory_used_bytes=int(mem.used),
                    memory_total_bytes=int(mem.total),
                )
            )
        return hb
