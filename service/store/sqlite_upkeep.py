"""Upkeep of the SQLite file (a mixin of `SqliteDb`): the WAL checkpoint that follows an
erasure, and the readiness write probe."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from service.store.private_files import probe_file
from service.store.records import now_iso


class SqliteUpkeep:
    """Needs the connection, its lock, the path and the transaction helper."""

    _db: sqlite3.Connection
    _lock: threading.Lock
    path: Path

    def _tx(self) -> Any:
        raise NotImplementedError

    def checkpoint(self) -> bool:
        """Copy the WAL into the file and truncate it (erased rows leave the -wal file); False
        when another process kept it from finishing within 2 s (the next one will)."""
        with self._lock:
            try:
                self._db.execute("PRAGMA busy_timeout=2000")
                busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            except sqlite3.OperationalError:
                busy = 1
            finally:
                self._db.execute("PRAGMA busy_timeout=30000")
        return not busy

    def probe_write(self) -> None:
        """A small real write to the data directory and the database (readiness)."""
        if str(self.path) != ":memory:":
            probe_file(self.path.parent)
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO write_probe (id, at) VALUES (1, ?)", (now_iso(),))
