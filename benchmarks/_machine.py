"""What the benchmarks share: how busy the whole machine was (other processes skew timings)."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_busy_s() -> float | None:
    """Seconds of CPU time every process on the machine has used (Linux /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
