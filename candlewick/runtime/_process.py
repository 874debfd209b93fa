"""The process: tuning for a long-lived server, and its CPU and memory as Linux's /proc reports them.

Tuning: the cyclic collector and glibc's mmap threshold. The /proc readers serve the benchmarks
and the reliability tests.
"""

from __future__ import annotations

import ctypes
import gc
import os


def tune_gc() -> None:
    """For a long-lived server process: move everything alive at start-up out of the cyclic
    collector's view, and collect the youngest generation less often. The engine allocates a
    few short-lived objects per tick, almost none of them cyclic; with the default threshold
    (700) full passes over a heap of many actors and bars cost more than the work itself."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


MMAP_THRESHOLD = 1 << 20
"""Allocations this large or larger get their own mapping, returned to the OS when freed."""


def tune_malloc() -> bool:
    """For a long-lived server process on glibc: allocations of ``MMAP_THRESHOLD`` or more (request
    bodies near the 4 MiB limit, their decoded forms) always get their own mapping. By default glibc
    raises that threshold to the size of each large block freed, up to 32 MiB, after which such
    blocks come from the heap and stay resident when freed: one 4 MiB body left the server ~8 MiB
    larger for good, some of the time (RSS after 1,000 malformed bodies: +1% to +15% over before;
    with this, +2% to +4%). Leaves an explicit ``MALLOC_MMAP_THRESHOLD_`` alone. True when set."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is not None:
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(-3, MMAP_THRESHOLD))  # -3: M_MMAP_THRESHOLD


CLK_TCK = os.sysconf("SC_CLK_TCK")


def pid_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) the process has used; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            tail = f.read().rsplit(")", 1)[1].split()
        return (int(tail[11]) + int(tail[12])) / CLK_TCK  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def pid_rss_bytes(pid: int | str = "self") -> dict:
    """``{"VmRSS": bytes, "VmHWM": bytes}``: resident memory now and at its peak (empty if gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, idle and iowait excluded)."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:9]]
    return (sum(vals) - vals[3] - vals[4]) / CLK_TCK
