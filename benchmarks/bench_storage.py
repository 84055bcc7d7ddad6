"""What storage safety costs on the SQLite store: sealing (AES-256-GCM) of a photo, the
readiness write probe, and erasure (secure_delete + TRUNCATE checkpoint) per case.

Run: .venv/bin/python benchmarks/bench_storage.py [--n 30]. Prints medians (ms) and ratios.
No assertions: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.store.sealing import Sealer  # noqa: E402
from service.store.sqlite import SqliteDb  # noqa: E402


def median_ms(fn: Callable[[int], object], n: int) -> float:
    for i in range(3):
        fn(-1 - i)
    samples = []
    for i in range(n):
        began = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def cases_ms(db: SqliteDb, photo: bytes, n: int, erase: bool) -> tuple[float, float]:
    """Median ms of create_job, and of delete_job (with its checkpoint when `erase`)."""
    created: list[float] = []
    deleted: list[float] = []
    for i in range(n):
        job = f"job-{erase}-{i}"
        began = time.perf_counter()
        db.create_job(job, "diagnose", {}, ({"case_id": job}, photo))
        created.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        if erase:
            db.delete_job(job)
        else:
            with db._tx() as tx:  # the delete alone, as before: no checkpoint
                tx.execute("DELETE FROM jobs WHERE id=?", (job,))
        deleted.append((time.perf_counter() - began) * 1000)
    return statistics.median(created), statistics.median(deleted)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--photo-kb", type=int, default=1024)
    args = parser.parse_args()
    photo = os.urandom(args.photo_kb * 1024)
    sealer = Sealer(os.urandom(32))
    sealed = sealer.seal(photo, "job", "case")
    seal = median_ms(lambda i: sealer.seal(photo, "job", "case"), args.n)
    unseal = median_ms(lambda i: sealer.open(sealed, "job", "case"), args.n)
    print(f"seal {args.photo_kb} KiB: {seal:.2f} ms; open: {unseal:.2f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        plain = SqliteDb(Path(tmp) / "plain.db")
        keyed = SqliteDb(Path(tmp) / "keyed.db", sealer=sealer)
        erasing = SqliteDb(Path(tmp) / "erasing.db")
        probe = median_ms(lambda i: plain.probe_write(), args.n)
        print(f"readiness write probe (64 KiB file + one row): {probe:.2f} ms")
        create_plain, delete_plain = cases_ms(plain, photo, args.n, erase=False)
        create_keyed, _ = cases_ms(keyed, photo, args.n, erase=False)
        _, delete_erase = cases_ms(erasing, photo, args.n, erase=True)
        print(
            f"create_job {args.photo_kb} KiB: {create_plain:.2f} ms plain, {create_keyed:.2f} ms "
            f"sealed ({create_keyed / create_plain:.2f}x)"
        )
        print(
            f"delete_job: {delete_plain:.2f} ms the DELETE alone, {delete_erase:.2f} ms with the "
            f"TRUNCATE checkpoint ({delete_erase / delete_plain:.2f}x)"
        )
        for db in (plain, keyed, erasing):
            db.close()


if __name__ == "__main__":
    main()
