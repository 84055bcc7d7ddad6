"""One run at a time per device, first come first served, usable from any thread or event loop.

An `asyncio.Lock` binds to one event loop and cannot be released from a worker thread; the
queue is released by the generation thread itself when it really stops, so a cancelled run
never overlaps the next one on the same GPU.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class DeviceQueue:
    """A FIFO mutex: `await acquire()` in a coroutine, `release()` from any thread."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._busy = False
        self._waiters: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        """Runs queued behind the current one."""
        return len(self._waiters)

    @property
    def busy(self) -> bool:
        """Whether a run holds the device."""
        return self._busy

    async def acquire(self) -> None:
        """Wait for the device; a waiter cancelled after being handed the device passes it on."""
        loop = asyncio.get_running_loop()
        with self._mutex:
            if not self._busy:
                self._busy = True
                return
            waiter: _Waiter = (loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            with self._mutex:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if not queued:
                self.release()
            raise

    def release(self) -> None:
        """Hand the device to the next waiter (it stays busy) or mark it free."""
        with self._mutex:
            if not self._waiters:
                self._busy = False
                return
            loop, future = self._waiters.popleft()
        try:
            loop.call_soon_threadsafe(_wake, future)
        except RuntimeError:  # that waiter's event loop is closed: skip it
            self.release()


_QUEUES: dict[str, DeviceQueue] = {}
_QUEUES_LOCK = threading.Lock()


def queue_for(device: str) -> DeviceQueue:
    """The process-wide queue of `device` ("cuda" and "cuda:0" are the same device)."""
    key = "cuda:0" if device == "cuda" else device
    with _QUEUES_LOCK:
        return _QUEUES.setdefault(key, DeviceQueue())
