"""Storage faults: a database error that means "the store cannot write now" → a `ServiceError`.

Both backends raise `StorageFull` (507) when the disk or the database is full and
`StorageFault` (503) when it is read-only, failing I/O or unreachable, so every door answers
problem+json / OperationOutcome instead of a 500, and the worker can end a run cleanly.
`WriteProbe` is the cached write check `/ready` reads.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from service.errors import ServiceError, StorageFault, StorageFull, StoredDataUnreadable

C = TypeVar("C", bound=type)

# SQLite primary result codes (the low byte of an extended code).
_SQLITE_FULL = {13}  # SQLITE_FULL: disk full, or max_page_count reached
_SQLITE_UNAVAILABLE = {3, 5, 6, 8, 10, 14, 15, 22}  # PERM BUSY LOCKED READONLY IOERR CANTOPEN …
_OS_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_OS_UNAVAILABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
FULL_DETAIL = "the service's storage is full; retry later"
UNAVAILABLE_DETAIL = "the service's storage cannot be written now; retry later"


def storage_fault(exc: BaseException) -> StorageFault | None:
    """The fault `exc` stands for, or None when it is not a storage condition (a bug)."""
    if isinstance(exc, StorageFault):
        return exc
    if isinstance(exc, ServiceError):
        return None
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
        if code in _SQLITE_FULL:
            return StorageFull(FULL_DETAIL, retry_after=30)
        if code in _SQLITE_UNAVAILABLE:
            return StorageFault(UNAVAILABLE_DETAIL, retry_after=10)
        return None
    if isinstance(exc, OSError):
        if exc.errno in _OS_FULL:
            return StorageFull(FULL_DETAIL, retry_after=30)
        if exc.errno in _OS_UNAVAILABLE:
            return StorageFault(UNAVAILABLE_DETAIL, retry_after=10)
        return None
    return _postgres_fault(exc)


def _postgres_fault(exc: BaseException) -> StorageFault | None:
    """psycopg / psycopg_pool errors, without importing them where PostgreSQL is not used."""
    module = type(exc).__module__
    if not module.startswith(("psycopg", "psycopg_pool")):
        return None
    sqlstate = str(getattr(exc, "sqlstate", None) or "")
    if sqlstate in ("53100", "53400"):  # disk_full, configuration_limit_exceeded
        return StorageFull(FULL_DETAIL, retry_after=30)
    if sqlstate.startswith(("53", "57P", "08", "58")) or sqlstate == "25006":  # read-only tx
        return StorageFault(UNAVAILABLE_DETAIL, retry_after=10)
    name = type(exc).__name__
    if not sqlstate and name in ("OperationalError", "PoolTimeout", "TooManyRequests"):
        return StorageFault(UNAVAILABLE_DETAIL, retry_after=10)
    return None


class WriteProbe:
    """`ok()`: did a small real write succeed within the last `ttl_s` seconds? A failed write
    seen elsewhere (`failed()`) counts too, so `/ready` turns 503 at once and recovers when a
    later probe succeeds."""

    def __init__(self, write: Callable[[], Awaitable[None]], ttl_s: float = 2.0) -> None:
        self._write = write
        self.ttl_s = ttl_s
        self._at = float("-inf")
        self._ok = True
        self._lock = asyncio.Lock()

    def failed(self) -> None:
        self._ok, self._at = False, time.monotonic()

    async def ok(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._at >= self.ttl_s:
                try:
                    await self._write()
                    self._ok = True
                except Exception:
                    self._ok = False
                self._at = time.monotonic()
            return self._ok


def _translated(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except Exception as exc:
            fault = storage_fault(exc)
            if fault is None:
                raise
            probe = getattr(self, "probe", None)
            if isinstance(probe, WriteProbe) and not isinstance(fault, StoredDataUnreadable):
                probe.failed()
            if fault is exc:
                raise
            raise fault from exc

    return call


def raising_faults(cls: C) -> C:
    """Class decorator: every public coroutine method raises storage faults as `StorageFault`
    (and marks the store's `probe` failed) instead of the driver's exceptions."""
    for name in dir(cls):
        method = getattr(cls, name)
        public = not name.startswith("_") and name not in ("ping", "writable", "close")
        if public and inspect.iscoroutinefunction(method):
            setattr(cls, name, _translated(method))
    return cls
