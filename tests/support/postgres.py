"""A throwaway PostgreSQL cluster from Debian's `postgresql` package, for tests.

`start_postgres(root)` runs initdb + pg_ctl from the highest /usr/lib/postgresql/<ver>/bin,
listening on 127.0.0.1 at a free port (and a unix socket in `root`), trust auth, fsync off,
and returns a `PostgresServer` whose `stop()` kills it and deletes `root`.

initdb and postgres refuse to run as root, so under root (CI, fresh machines) both run as
Debian's `postgres` system user through `runuser`, in a directory chowned to it. That
directory must be reachable by that user: pytest's `tmp_path` lives under a 0700
/tmp/pytest-of-root, so pass a fresh directory in the system temp dir instead
(`tempfile.mkdtemp()`); `start_postgres` checks and says so.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

PG_LIB = Path("/usr/lib/postgresql")
SERVICE_USER = "postgres"  # created by Debian's postgresql-common
DB_USER = "skinscreen"
DB_NAME = "skinscreen"
START_TIMEOUT_S = 60.0
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",  # several test processes, each with a pool
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "timezone": "'UTC'",
}


class PostgresError(RuntimeError):
    """The throwaway cluster could not be created or started."""


def _bin_dir() -> Path | None:
    """The highest-version /usr/lib/postgresql/<ver>/bin holding initdb and pg_ctl."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (0,)

    candidates = [
        d / "bin"
        for d in PG_LIB.glob("*")
        if (d / "bin" / "initdb").is_file() and (d / "bin" / "pg_ctl").is_file()
    ]
    return max(candidates, key=lambda b: version(b.parent), default=None)


def _as_root() -> bool:
    return os.geteuid() == 0


def postgres_available() -> str | None:
    """None when a cluster can be started here, else why not (for a skip or fail message)."""
    if _bin_dir() is None:
        return (
            f"no initdb/pg_ctl under {PG_LIB}/*/bin — install Debian's `postgresql` package "
            "(scripts/setup.sh test does)"
        )
    if _as_root():
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return f"running as root but there is no `{SERVICE_USER}` user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root but `runuser` (util-linux) is missing"
    return None


@dataclass
class PostgresServer:
    """A running throwaway cluster. `dsn` points at database `dbname`, owned by `user`."""

    dsn: str
    data_dir: Path
    root: Path
    host: str
    port: int
    user: str
    dbname: str
    socket_dir: Path
    log_file: Path
    bin_dir: Path
    started_in_s: float
    _stopped: bool = field(default=False, repr=False)

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """A fresh database (for tests that want one of their own); returns its DSN."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return self.dsn_for(dbname)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill the server (no checkpoint: the data is thrown away) and delete `root`."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _run(
                [self.bin_dir / "pg_ctl", "stop", "-D", self.data_dir, "-m", "immediate", "-w"],
                cwd=self.root,
                timeout=30,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def _command(argv: Sequence[str | Path]) -> list[str]:
    args = [str(a) for a in argv]
    return ["runuser", "-u", SERVICE_USER, "--", *args] if _as_root() else args


def _run(
    argv: Sequence[str | Path], *, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    # cwd: the postgres user may not be allowed into the caller's working directory.
    # LC_ALL=C: the C locale always exists, so initdb and the server never depend on which
    # locales this machine generated.
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGDATA", "PGPASSWORD"):
        env.pop(name, None)
    return subprocess.run(
        _command(argv),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _failure(what: str, err: BaseException, log_file: Path | None = None) -> PostgresError:
    detail = ""
    if isinstance(err, subprocess.CalledProcessError):
        detail = f"\n{err.stdout or ''}{err.stderr or ''}".rstrip()
    if log_file is not None and log_file.exists():
        detail += "\n--- server log ---\n" + log_file.read_text(errors="replace")[-4000:]
    return PostgresError(f"{what} failed: {err}{detail}")


def _prepare_root(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if not _as_root():
        return
    owner = pwd.getpwnam(SERVICE_USER)
    os.chown(root, owner.pw_uid, owner.pw_gid)
    root.chmod(0o700)
    try:
        _run(["test", "-w", root], cwd=Path("/"), timeout=10)
    except subprocess.CalledProcessError:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresError(
            f"user `{SERVICE_USER}` cannot reach {root}: one of its parent directories is "
            "closed to it (pytest's tmp_path is, under root); use tempfile.mkdtemp() instead"
        ) from None


def _wait_ready(dsn: str, deadline: float, log_file: Path) -> None:
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return
        except psycopg.OperationalError as err:
            if time.monotonic() > deadline:
                what = "waiting for PostgreSQL to accept connections"
                raise _failure(what, err, log_file) from err
            time.sleep(0.05)


def start_postgres(tmp: Path) -> PostgresServer:
    """Create and start a cluster in `tmp` (created if missing, deleted by `stop()`)."""
    reason = postgres_available()
    if reason is not None:
        raise PostgresError(reason)
    bin_dir = _bin_dir()
    assert bin_dir is not None
    began = time.monotonic()
    root = tmp.resolve()
    _prepare_root(root)
    data_dir, log_file = root / "data", root / "postgres.log"
    try:
        _run(
            [
                bin_dir / "initdb",
                "-D",
                data_dir,
                "-A",
                "trust",
                "-U",
                DB_USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=root,
            timeout=120,
        )
    except (subprocess.SubprocessError, OSError) as err:
        shutil.rmtree(root, ignore_errors=True)
        raise _failure("initdb", err) from err
    base_conf = (data_dir / "postgresql.conf").read_text()
    settings = {**SETTINGS, "unix_socket_directories": f"'{root}'"}

    # Another process can take the free port between our probe and the server's bind: retry.
    last: BaseException | None = None
    for _attempt in range(3):
        port = _free_port()
        conf = {**settings, "port": str(port)}
        (data_dir / "postgresql.conf").write_text(
            base_conf
            + "\n# tests/support/postgres.py\n"
            + "".join(f"{k} = {v}\n" for k, v in conf.items())
        )
        try:
            _run(
                [bin_dir / "pg_ctl", "start", "-D", data_dir, "-l", log_file, "-w", "-t", "60"],
                cwd=root,
                timeout=START_TIMEOUT_S + 10,
            )
        except (subprocess.SubprocessError, OSError) as err:
            last = err
            if "could not bind" in (
                log_file.read_text(errors="replace") if log_file.exists() else ""
            ):
                log_file.unlink(missing_ok=True)
                continue
            break
        server = PostgresServer(
            dsn=f"postgresql://{DB_USER}@127.0.0.1:{port}/{DB_NAME}",
            data_dir=data_dir,
            root=root,
            host="127.0.0.1",
            port=port,
            user=DB_USER,
            dbname=DB_NAME,
            socket_dir=root,
            log_file=log_file,
            bin_dir=bin_dir,
            started_in_s=0.0,
        )
        atexit.register(server.stop)  # a caller that forgets stop() leaves no server behind
        try:
            _wait_ready(server.dsn_for("postgres"), began + START_TIMEOUT_S, log_file)
            with psycopg.connect(server.dsn_for("postgres"), autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
        except BaseException:
            server.stop()
            raise
        server.started_in_s = time.monotonic() - began
        return server
    error = _failure("pg_ctl start", last or PostgresError("port kept being taken"), log_file)
    shutil.rmtree(root, ignore_errors=True)
    raise error
