"""FHIR search over the per-case index: how long `GET /fhir/DiagnosticReport?patient=…` takes
to read and filter N stored cases (SQLite store; the in-process app through TestClient).

Run: .venv/bin/python benchmarks/bench_fhir_search.py [--jobs 2000] [--n 20]. Prints medians
(ms). No assertions: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from litestar.testing import TestClient  # noqa: E402

from fhir_mappings.search_index import INDEX_KIND  # noqa: E402
from service.app import create_app  # noqa: E402
from service.store import JobStore  # noqa: E402
from tests.support.factories import fake_deps, fake_services  # noqa: E402


async def _fill(store: JobStore, jobs: int) -> None:
    for number in range(jobs):
        job_id = f"job-{number:06d}"
        report = {"resourceType": "DiagnosticReport", "id": job_id, "status": "final",
                  "code": {"text": "x"}}  # fmt: skip
        index = {
            "v": 1, "status": "final", "date": "2025-01-01T00:00:00Z", "code": [],
            "identifier": [{"system": "urn:case", "value": job_id}],
            "subject": f"Patient/p{number % 100}",
            "patient": {"id": f"p{number % 100}", "identifier": [],
                        "resource": {"resourceType": "Patient", "id": f"p{number % 100}"}},
        }  # fmt: skip
        await store.create_job(job_id, "fhir", {"client": "anonymous"}, ({}, b""))
        claim = await store.claim("bench", 60, 3)
        assert claim is not None
        await store.put_artifact(
            job_id,
            "fhir",
            "application/fhir+json",
            json.dumps(report).encode(),
            claim.fence,
        )
        await store.put_artifact(
            job_id,
            INDEX_KIND,
            "application/json",
            json.dumps(index).encode(),
            claim.fence,
        )
        await store.end(claim.fence, "completed", "completed", {})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        services = fake_services(Path(tmp), fake_deps(), with_worker=False)
        asyncio.run(_fill(services.store, args.jobs))
        with TestClient(create_app(services.settings, services=services)) as client:
            for label, path in (
                ("patient=p7 (20 of N)", "/fhir/DiagnosticReport?patient=p7"),
                ("no filter, _count=20", "/fhir/DiagnosticReport"),
                ("_count=0 (total only)", "/fhir/DiagnosticReport?_count=0"),
                ("Patient search", "/fhir/Patient"),
            ):
                samples = []
                for _ in range(args.n):
                    started = time.perf_counter()
                    assert client.get(path).status_code == 200
                    samples.append((time.perf_counter() - started) * 1000)
                print(f"{args.jobs} cases, {label}: median {statistics.median(samples):.1f} ms")


if __name__ == "__main__":
    main()
