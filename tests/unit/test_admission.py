"""Admission: the budget of ticks in flight gives every unit back, also when a waiter is cancelled."""

from __future__ import annotations

import trio

from candlewick.runtime import Admission


async def test_cancelled_fast_path_takes_nothing():
    """A request cancelled as it acquires (its client hung up) leaves no units taken."""
    adm = Admission(10)
    with trio.CancelScope() as scope:
        scope.cancel()
        await adm.acquire(5)
    assert scope.cancelled_caught
    assert adm.in_use == 0


async def test_cancelled_waiter_takes_nothing_and_the_next_is_served(autojump_clock):
    """A queued request that gives up leaves the queue; the one behind it gets its units."""
    adm = Admission(10)
    await adm.acquire(8)
    got = []

    async def waiter(n: int, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await adm.acquire(n)
            got.append(n)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, 5, 1.0)   # gives up after 1 s
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, 2, 10.0)  # fits at once, but waits its turn (FIFO)
        await trio.sleep(2)                  # virtual time: the first has given up by now
    assert got == [2] and adm.in_use == 10
    adm.release(8)
    adm.release(2)
    assert adm.in_use == 0
