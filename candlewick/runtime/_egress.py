"""Egress: turns to write for the SSE writers, given when the server has nothing else to do.

State it owns: the writers waiting for a turn, in the order they asked. Its ``run`` task, in the
broadcaster's nursery, hands out ``per_idle`` turns when the trio loop is idle and ``per_busy``
after ``max_wait`` seconds without idleness; it lives and dies with the broadcaster. See
docs/ARCHITECTURE.md, "Fan-out" (egress: why, and what SSE then costs ingest).
"""

from __future__ import annotations

from collections import deque
from contextlib import suppress

import trio

from candlewick.runtime._subscriber import Subscriber


class _IdleWatch(trio.abc.Instrument):
    """Tells when the event loop is idle: nothing to run and no I/O ready, as trio itself defines it
    for ``wait_all_tasks_blocked``. When the loop is about to wait for I/O with nothing runnable
    (a wait with a timeout), it probes: a ``run_sync_soon`` callback wakes that wait at once, and if
    the wait woke no task but the probe's (the one that runs the callback), the loop is idle;
    otherwise it probes again at the next such wait. The tasks a wait woke are counted as trio
    schedules them (``task_scheduled``), not read from ``current_statistics``, which counts every
    registered socket (1,000 subscribers' worth) each time. Installed only while the egress waits
    for idleness, so it costs nothing otherwise. (Under a ``MockClock`` that autojumps at once,
    every wait is a poll: turns then come at ``max_wait``, when the clock jumps there.)"""

    def __init__(self) -> None:
        self.idle = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._probing = False
        self._quiet: bool | None = None
        self._woken = 0

    def arm(self) -> trio.Event:
        """A fresh ``idle`` event, to be set the next time the loop is idle."""
        self.idle = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._probing = False
        return self.idle

    def before_io_wait(self, timeout: float) -> None:
        if timeout > 0 and not self._probing:  # nothing runnable now (else trio would not wait)
            self._probing = True
            self._quiet = None
            self._woken = 0
            self._token.run_sync_soon(self._probed)  # type: ignore[union-attr]

    def task_scheduled(self, task) -> None:
        self._woken += 1

    def after_io_wait(self, timeout: float) -> None:
        if self._probing and self._quiet is None:  # the wait the probe woke: did it wake anything else?
            self._quiet = self._woken <= 1

    def _probed(self) -> None:
        self._probing = False
        if self._quiet:
            self.idle.set()


class Egress:
    """Turns to write for the SSE writers (``turn``), handed out by ``run``, so that writing
    yields to everything else the server does: ingest (requests, actors, flushes) runs first."""

    def __init__(self, *, per_idle: int = 32, per_busy: int = 4, max_wait: float = 1.0) -> None:
        self.per_idle = per_idle
        self.per_busy = per_busy
        self.max_wait = max_wait
        self.waiting: deque[trio.Event] = deque()
        self.turns = 0
        self._wanted = trio.Event()
        self._watch = _IdleWatch()

    async def turn(self, sub: Subscriber) -> None:
        """Wait for this writer's turn (or for ``sub`` to be closed). Turns come while ``run`` runs."""
        ev = sub.turn = trio.Event()
        if sub.closed:
            return
        self.waiting.append(ev)
        self._wanted.set()
        try:
            await ev.wait()
        finally:
            sub.turn = None
            if not ev.is_set():  # cancelled while waiting: give the turn to someone else
                with suppress(ValueError):
                    self.waiting.remove(ev)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Hand out turns as writers ask for them, until cancelled."""
        waiting = self.waiting
        task_status.started()
        while True:
            await self._wanted.wait()
            turns = self.per_busy
            with trio.move_on_after(self.max_wait):
                await self.wait_idle()
                turns = self.per_idle
            for _ in range(min(turns, len(waiting))):
                waiting.popleft().set()
                self.turns += 1
            if not waiting:
                self._wanted = trio.Event()

    async def wait_idle(self) -> None:
        """Wait until the event loop has nothing else to run."""
        watch = self._watch
        idle = watch.arm()
        trio.lowlevel.add_instrument(watch)
        try:
            await idle.wait()
        finally:
            trio.lowlevel.remove_instrument(watch)
