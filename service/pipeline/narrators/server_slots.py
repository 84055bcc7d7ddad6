"""Bounded load on a set of remote model servers, and state kept per event loop.

`ServerSlots`: at most `limit` requests in flight per server (an `asyncio.Semaphore` each), a
count of those waiting for a slot, the choice of a server with a free slot and a Retry-After
estimate. `LoopLocal`:
one value per running event loop — asyncio primitives and pooled connections belong to the loop
that made them, and the CLI runs one `asyncio.run` after another, so a value made in a loop
that has ended must not be reused.
"""

from __future__ import annotations

import asyncio
import math
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
#: Assumed seconds a request holds a slot before one has been measured (for Retry-After).
_DEFAULT_HOLD_S = 30.0


def split_urls(urls: str | Sequence[str]) -> tuple[str, ...]:
    """Base URLs from one URL, a comma-separated list or a sequence: stripped, no trailing
    slash, no duplicates, order kept."""
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    stripped = (item.strip().rstrip("/") for item in items)
    return tuple(dict.fromkeys(url for url in stripped if url))


class LoopLocal(Generic[T]):
    """`get()` → the running loop's value, made by `factory` on first use in that loop."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def get(self) -> T:
        """The running loop's value (RuntimeError outside a running loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            value = self._values.get(loop)
            if value is None:
                for ended in [other for other in self._values if other.is_closed()]:
                    del self._values[ended]
                value = self._values[loop] = self._factory()
            return value

    def peek(self) -> T | None:
        """The running loop's value if one was made; None outside a loop or before first use."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            return self._values.get(loop)


class ServerSlots:
    """Concurrency slots per server (one event loop's view)."""

    def __init__(self, servers: Sequence[str], limit: int) -> None:
        self._slots = {server: asyncio.Semaphore(limit) for server in servers}
        self._in_flight = dict.fromkeys(servers, 0)
        self.capacity = limit * len(self._slots)
        #: Requests waiting for a slot (first attempt or fail-over).
        self.waiting = 0
        #: Seconds a request holds a slot (moving average).
        self.hold_s = _DEFAULT_HOLD_S

    @property
    def in_flight(self) -> int:
        """Requests holding a slot, over all servers."""
        return sum(self._in_flight.values())

    def saturated(self) -> bool:
        """Whether no server has a free slot."""
        return all(slot.locked() for slot in self._slots.values())

    def full(self, queue_size: int) -> bool:
        """Every slot taken and `queue_size` requests already waiting."""
        return self.saturated() and self.waiting >= queue_size

    def retry_after(self) -> int:
        """Seconds until a waiting request might get a slot (1 to 600)."""
        return min(600, max(1, math.ceil(self.hold_s * (self.waiting / self.capacity + 1))))

    def choose(self, candidates: Sequence[str]) -> str:
        """The first candidate with a free slot, else the first candidate."""
        return next((s for s in candidates if not self._slots[s].locked()), candidates[0])

    async def acquire(self, server: str) -> None:
        """Wait (FIFO) for a slot on `server`."""
        slot = self._slots[server]
        if slot.locked():
            self.waiting += 1
            try:
                await slot.acquire()
            finally:
                self.waiting -= 1
        else:
            await slot.acquire()
        self._in_flight[server] += 1

    def release(self, server: str, held_s: float | None = None) -> None:
        """Free a slot; `held_s`: how long a finished request held it (for `retry_after`)."""
        self._in_flight[server] -= 1
        self._slots[server].release()
        if held_s is not None:
            self.hold_s = 0.7 * self.hold_s + 0.3 * held_s
