"""The machine a benchmark ran on, and how busy it was: CPU model, threads, device, the load average, the
share of the CPU other processes used meanwhile and this process's age (Linux /proc; None elsewhere)."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch

from engine.benchmarking.throughput_report import device_tag, parse_cpu_model


def machine_info(device: torch.device) -> dict:
    try:
        cpu = parse_cpu_model(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu = None
    cuda_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"platform": platform.platform(), "cpu_model": cpu or platform.processor() or "unknown",
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": str(device), "device_name": cuda_name or "cpu",
            "cuda": torch.version.cuda if cuda_name else None, "tag": device_tag(device.type, cuda_name)}


def load_average() -> float | None:
    """The 1-minute load average, or None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def process_age_s() -> float | None:
    """Seconds since this process started (Linux /proc; None elsewhere). Field 22 of /proc/self/stat is
    the start time in clock ticks after boot; the command name before it may hold spaces, so split after ')'."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _cpu_seconds_busy() -> float | None:
    """CPU seconds all processes of the machine spent busy since boot (/proc/stat; None elsewhere)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


class OtherLoad:
    """Share of the machine's CPU time used by other processes while the block ran (0 = alone; 0.5 on 2
    cores = one core busy elsewhere): what the load average cannot tell apart from this process."""

    def __enter__(self) -> "OtherLoad":
        self.fraction = None
        self._busy, self._own, self._wall = _cpu_seconds_busy(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        busy = _cpu_seconds_busy()
        if busy is not None and self._busy is not None:
            others = busy - self._busy - (time.process_time() - self._own)
            self.fraction = max(0.0, others / ((os.cpu_count() or 1) * (time.perf_counter() - self._wall)))
