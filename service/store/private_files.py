"""What the store writes in the data directory is for this user only: directories 0700, files
0600 (the SQLite file is created 0600 before SQLite opens it; SQLite gives its -wal and -shm
files the database file's mode)."""

from __future__ import annotations

import os
from pathlib import Path

PROBE_BYTES = 64 * 1024
SIDE_FILES = ("", "-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """Create `path` and any missing parent as 0700 (an existing directory is left as it is)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # the umask may have taken bits away, never added


def private_db_file(path: Path) -> None:
    """The SQLite file exists and it and its side files are 0600 (older stores were 0644)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    for suffix in SIDE_FILES:
        side = Path(f"{path}{suffix}")
        if side.exists() and side.stat().st_mode & 0o077:
            os.chmod(side, 0o600)


def probe_file(directory: Path) -> None:
    """Write `PROBE_BYTES` to a new file in `directory` and remove it: OSError (ENOSPC, EFBIG,
    EROFS, …) when the disk cannot take a small write now."""
    path = directory / f".write-probe-{os.getpid()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"\0" * PROBE_BYTES
        written = 0
        while written < PROBE_BYTES:
            written += os.write(fd, block[written:])
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
