"""Peak resident memory of this process, for the benchmarks that run each contender in a process of its own (Linux:
the kernel's peak counter ``VmHWM``, reset through ``/proc/self/clear_refs``)."""

from __future__ import annotations


def _status(field: str) -> int:
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def resetPeak() -> int:
    """Reset the kernel's peak-RSS counter (Linux) and return the current RSS, the baseline."""
    with open("/proc/self/clear_refs", "w") as stream:
        stream.write("5")
    return _status("VmRSS")


def peakRssBytes() -> int:
    return _status("VmHWM")
