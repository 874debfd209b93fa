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
    """Tells when the event loop is about to wait for I/O with nothing to run: it then waits with
    a timeout (with a task runnable, the wait is a poll: timeout 0). Installed only while the
    egress waits for that, so it costs nothing otherwise. (Under a ``MockClock`` that autojumps
    at once, every wait is a poll: turns then come at ``max_wait``, when the clock jumps there.)"""

    def __init__(self) -> None:
        self.idle = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._told = False

    def arm(self) -> trio.Event:
        """A fresh ``idle`` event, to be set the next time the loop is idle."""
        self.idle = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._told = False
        return self.idle

    def before_io_wait(self, timeout: float) -> None:
        if timeout > 0 and not self._told:
            self._told = True
            # not Event.set here, inside the run loop: a callback wakes the I/O wait at once
            self._token.run_sync_soon(self.idle.set)  # type: ignore[union-attr]


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
