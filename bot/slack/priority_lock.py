"""A lock whose waiters are served by priority (lower first), then in arrival order.

Posts to one Slack channel go one at a time (bot/slack/chat.py's ChannelPacer). In an alert
storm many posts wait for the same channel; the storm digest and critical incidents' root
messages must not queue behind a warning's, nor behind a post that holds the channel only
to wait out Slack's pace (`Holding.wait`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

__all__ = ["Holding", "PriorityLock"]


class PriorityLock:
    def __init__(self) -> None:
        self._held = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._arrived = asyncio.Event()

    @property
    def queued(self) -> int:
        """Holder and waiters."""
        return int(self._held) + sum(1 for w in self._waiters if not w[2].done())

    @asynccontextmanager
    async def hold(self, priority: int = 5) -> AsyncIterator[Holding]:
        holding = Holding(self, priority, next(self._order))
        await self._acquire(holding.priority, holding.order)
        try:
            yield holding
        finally:
            self._release()

    def _better_waiting(self, priority: int) -> bool:
        return any(p < priority and not f.done() for p, _, f in self._waiters)

    async def _acquire(self, priority: int, order: int) -> None:
        if not self._held and not self._waiters:
            self._held = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, order, future))
        self._arrived.set()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # handed over just as we were cancelled: pass it on
            else:
                self._waiters = [w for w in self._waiters if w[2] is not future]
                heapq.heapify(self._waiters)
            raise

    def _release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # ownership passes directly; _held stays True
                return
        self._held = False


@dataclass
class Holding:
    """The holder's side of the lock, for a holder that must wait before using it (a post
    waiting for the channel's pace): it can let a more urgent waiter go first."""

    lock: PriorityLock
    priority: int
    order: int

    async def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, stepping aside whenever a waiter of a lower priority number
        arrives (it takes the lock; this holder queues again in its original place). Returns
        True when the holder slept it out still holding the lock, False when it stepped aside
        (and holds the lock again, later: the caller must check the time again)."""
        lock = self.lock
        deadline = asyncio.get_running_loop().time() + seconds
        while not lock._better_waiting(self.priority):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return True
            lock._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lock._arrived.wait(), left)
        lock._release()  # to the best waiter: the more urgent one
        await lock._acquire(self.priority, self.order)
        return False
