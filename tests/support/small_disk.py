"""A real, small filesystem for storage-fault tests: a tmpfs of a few MiB mounted on a temporary
directory, which a test fills (ENOSPC) and frees.

Mounting needs root with CAP_SYS_ADMIN (these machines' containers have it). Where it is not
allowed the test is skipped loudly — and fails under CI (CI=true), like the PostgreSQL fixture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.ci import IN_CI


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


class SmallDisk:
    """A mounted tmpfs at `root`; `fill()` takes every free byte, `free()` gives them back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._filler = root / "filler"

    def fill(self) -> int:
        """Write a filler file until the filesystem is full; the bytes written."""
        written = 0
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 12, 1):
                block = b"\0" * size
                try:
                    while True:
                        written += os.write(fd, block)
                except OSError as exc:
                    if exc.errno != 28:  # ENOSPC
                        raise
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free


@contextmanager
def small_disk(root: Path, size: str = "24m") -> Iterator[SmallDisk]:
    """`with small_disk(tmp_path / "disk") as disk:` — unmounted afterwards."""
    root.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(root))
    if done.returncode != 0:
        message = f"SMALL DISK UNAVAILABLE: cannot mount a tmpfs ({done.stderr.strip()})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield SmallDisk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True, check=False)
