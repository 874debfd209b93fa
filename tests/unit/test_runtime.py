"""Process-wide tuning that ``candlewick run`` applies: the allocator keeps no freed large blocks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys
from candlewick.runtime import pid_rss_bytes
def rss():
    return pid_rss_bytes()["VmRSS"] / 2**20
if sys.argv[1] == "tuned":
    from candlewick.runtime import tune_malloc
    assert tune_malloc()
pins = []
a = bytearray(4 << 20)
del a                        # untuned glibc raises its mmap threshold past 4 MiB here
base = rss()
for _ in range(16):
    b = bytearray(4 << 20)   # a request body near the 4 MiB limit
    pins.append(bytes(200))  # small objects made meanwhile pin the top of the heap
    del b
print(rss() - base)
"""


def retained_mib(mode: str, env: dict[str, str] | None = None) -> float:
    proc = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True,
                          cwd=ROOT)
    return float(proc.stdout)


def test_large_freed_blocks_go_back_to_the_os():
    """After tune_malloc, a freed 4 MiB block leaves no resident memory behind; without it, glibc's
    sliding threshold serves the next ones from the heap, where a small object made meanwhile keeps
    the freed block resident."""
    untuned, tuned = retained_mib("plain"), retained_mib("tuned")
    assert tuned < 1.0, f"tuned process kept {tuned:.1f} MiB (untuned: {untuned:.1f} MiB)"
    assert untuned >= 3.0, f"untuned glibc kept only {untuned:.1f} MiB: this probe no longer shows the problem"


def test_an_explicit_mmap_threshold_is_left_alone():
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run([sys.executable, "-c", "from candlewick.runtime import tune_malloc; print(tune_malloc())"],
                          capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == "False"
