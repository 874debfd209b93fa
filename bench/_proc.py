"""CPU accounting of the benchmark harness: the cores a window cost the machine, given processes and Postgres."""

from __future__ import annotations

import os
import time

from candlewick.runtime import machine_busy_seconds, pid_cpu_seconds


def postgres_pids() -> list[int]:
    """The pids of every process named ``postgres`` (the server and its backends)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == "postgres":
                        out.append(int(entry))
            except OSError:
                pass
    return out


class CpuMeter:
    """Cores used over a window by the whole machine (``machine_busy_cores``), by the given pids
    (``<name>_cores``) and, with ``postgres=True``, by the postgres processes together
    (``postgres_cores``: a backend born inside the window spent all its CPU in it). Figures are
    rounded to ``ndigits`` (None: not rounded).

    Use as a context manager (the figures are in ``result`` afterwards), or ``start()`` then
    ``stop()``, which returns them."""

    def __init__(self, *, postgres: bool = False, ndigits: int | None = 3, **pids: int) -> None:
        self.pids = pids
        self.postgres = postgres
        self.ndigits = ndigits
        self.result: dict = {}

    def start(self) -> CpuMeter:
        self.t0 = time.perf_counter()
        self.m0 = machine_busy_seconds()
        self.p0 = {k: pid_cpu_seconds(p) for k, p in self.pids.items()}
        self.pg0 = {pid: pid_cpu_seconds(pid) for pid in postgres_pids()} if self.postgres else {}
        self.result = {}
        return self

    def stop(self) -> dict:
        dt = max(1e-9, time.perf_counter() - self.t0)
        out = {"machine_busy_cores": (machine_busy_seconds() - self.m0) / dt}
        for k, p in self.pids.items():
            now, before = pid_cpu_seconds(p), self.p0.get(k)
            if now is not None and before is not None:
                out[f"{k}_cores"] = (now - before) / dt
        if self.postgres:
            spent = 0.0
            for pid in postgres_pids():
                now, before = pid_cpu_seconds(pid), self.pg0.get(pid, 0.0)
                if now is not None and before is not None:
                    spent += now - before
            out["postgres_cores"] = spent / dt
        self.result = out if self.ndigits is None else {k: round(v, self.ndigits) for k, v in out.items()}
        return self.result

    def __enter__(self) -> CpuMeter:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
