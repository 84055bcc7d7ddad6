"""Hostile input at each door, on the in-process app (real intake, jobs, store and routes).

The findings of a loopback attacker, each pinned: oversized or non-ASCII event ids, deeply nested
or huge-number FHIR JSON, a second `image` field, an over-long multipart boundary, a forged Host
header, MPO photos, the interactive OpenAPI pages. The live-server corpus that sweeps every door
is `tests/integration/test_hostile_inputs.py`.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from PIL import Image

from service.app import create_app
from service.bootstrap import Services
from service.settings import Settings
from tests.support.factories import fake_deps, fake_services, jpeg

FHIR = "application/fhir+json"
DIAGNOSE = "/fhir/DiagnosticReport/$diagnose"
PUBLIC = "https://skin.example.org/screening"


@pytest.fixture
def services(tmp_path: Path) -> Services:
    settings = Settings(data_dir=tmp_path, job_lease_s=3.0, public_base_url=PUBLIC)
    return fake_services(tmp_path, fake_deps(), settings)


@pytest.fixture
def client(services: Services) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(services.settings, services=services)) as made:
        yield made


def multipart(boundary: str, *parts: tuple[str, bytes, str | None]) -> bytes:
    """A multipart/form-data body written by hand: (name, content, filename or None)."""
    out = b""
    for name, content, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if filename:
            head += "Content-Type: image/jpeg\r\n"
        out += (head + "\r\n").encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def mpo_photo() -> bytes:
    """A two-picture MPO (what many phones write), made with Pillow's MPO writer."""
    first = Image.new("RGB", (96, 96), (200, 150, 130))
    second = Image.new("RGB", (96, 96), (20, 40, 60))
    buffer = io.BytesIO()
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    return data


def finished_job(client: TestClient[Any]) -> str:
    answer = client.post(
        "/api/v1/diagnose-stream", files={"image": ("p.jpg", jpeg(), "image/jpeg")}
    )
    assert answer.status_code == 200 and "event: completed" in answer.text
    return str(answer.headers["x-job-id"])


def assert_outcome(answer: Any, status: int) -> None:
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["content-type"].startswith(FHIR)
    assert answer.json()["resourceType"] == "OperationOutcome"


def assert_problem(answer: Any, status: int) -> None:
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["status"] == status


@pytest.mark.parametrize(
    "value", [b"9" * 5000, "é".encode(), "²".encode(), b"\xff", b"-1", b"1.5", b"0x1", b"1 2"]
)
def test_a_bad_last_event_id_is_400_on_both_event_streams(
    client: TestClient[Any], value: bytes
) -> None:
    job_id = finished_job(client)
    rest = client.get(f"/api/v1/jobs/{job_id}/events", headers=[(b"last-event-id", value)])
    assert_problem(rest, 400)
    assert rest.json()["detail"].startswith("Last-Event-ID")
    assert_outcome(
        client.get(f"/fhir/jobs/{job_id}/events", headers=[(b"last-event-id", value)]), 400
    )


def test_a_bad_after_is_400_and_good_ids_resume(client: TestClient[Any]) -> None:
    job_id = finished_job(client)
    assert_problem(client.get(f"/api/v1/jobs/{job_id}/events?after={'9' * 5000}"), 400)
    resumed = client.get(f"/api/v1/jobs/{job_id}/events", headers={"Last-Event-ID": " 2 "})
    assert (
        resumed.status_code == 200 and "id: 1\n" not in resumed.text and "id: 3\n" in resumed.text
    )
    fhir = client.get(f"/fhir/jobs/{job_id}/events", headers={"Last-Event-ID": "2"})
    assert fhir.status_code == 200
    assert fhir.headers["content-type"].startswith("text/event-stream")
    assert "id: 3\n" in fhir.text and "id: 2\n" not in fhir.text


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"resourceType": "Parameters", "x": ' + b"9" * 5000 + b"}",
        b'{"resourceType": "Parameters", "parameter": NaN}',
        b'{"resourceType": "Parameters", "id": "\\ud800"}',
        b'{"resourceType": ' * 5000,
    ],
    ids=["deep", "long-number", "nan", "lone-surrogate", "deep-unterminated"],
)
def test_hostile_fhir_json_is_a_400_operation_outcome(client: TestClient[Any], body: bytes) -> None:
    assert_outcome(client.post(DIAGNOSE, content=body, headers={"content-type": FHIR}), 400)


@pytest.mark.parametrize(
    "path", ["/fhir/nope", "/fhir/Observation/1", "/fhir/Media", "/fhir/", "/fhir/%00"]
)
def test_every_unrouted_fhir_path_is_an_operation_outcome(
    client: TestClient[Any], path: str
) -> None:
    assert_outcome(client.get(path), 404)
    assert client.delete("/fhir/metadata").json()["resourceType"] == "OperationOutcome"


def test_two_image_fields_are_refused(client: TestClient[Any]) -> None:
    body = multipart("b0", ("image", jpeg(), "a.jpg"), ("image", jpeg(), "b.jpg"))
    answer = client.post(
        "/api/v1/classify",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=b0"},
    )
    assert_problem(answer, 422)
    assert answer.json()["detail"].endswith("repeated: image")
    twice = multipart(
        "b1", ("image", jpeg(), "a.jpg"), ("patient_age", b"3", None), ("patient_age", b"99", None)
    )
    answer = client.post(
        "/api/v1/analyze",
        content=twice,
        headers={"content-type": "multipart/form-data; boundary=b1"},
    )
    assert_problem(answer, 422)


@pytest.mark.parametrize(("length", "status"), [(1, 200), (70, 200), (71, 400), (200, 400)])
def test_multipart_boundaries_follow_rfc_2046(
    client: TestClient[Any], length: int, status: int
) -> None:
    boundary = ("ab'()+_,-./:=?" * 20)[:length]
    body = multipart(boundary, ("image", jpeg(), "p.jpg"))
    answer = client.post(
        "/api/v1/classify",
        content=body,
        headers={"content-type": f'multipart/form-data; boundary="{boundary}"'},
    )
    assert answer.status_code == status, answer.text[:200]
    if status == 400:
        assert_problem(answer, 400)


def test_absolute_links_never_come_from_the_host_header(client: TestClient[Any]) -> None:
    forged = {"host": "evil.example", "x-forwarded-host": "evil.example"}
    metadata = client.get("/fhir/metadata", headers=forged)
    assert metadata.json()["implementation"]["url"] == f"{PUBLIC}/fhir"
    accepted = client.post(
        DIAGNOSE,
        content=json.dumps(
            {
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "image",
                        "valueAttachment": {
                            "contentType": "image/jpeg",
                            "data": base64.b64encode(jpeg()).decode(),
                        },
                    }
                ],
            }
        ),
        headers={**forged, "content-type": FHIR, "prefer": "respond-async"},
    )
    assert accepted.status_code == 202
    assert accepted.headers["content-location"].startswith(f"{PUBLIC}/fhir/jobs/")
    for answer in (
        metadata,
        accepted,
        client.get("/.well-known/smart-configuration", headers=forged),
    ):
        assert "evil.example" not in answer.text
        assert "evil.example" not in str(answer.headers)


def test_without_a_public_url_links_use_the_bound_address(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, host="127.0.0.1", port=8123)
    services = fake_services(tmp_path, fake_deps(), settings)
    with TestClient(create_app(settings, services=services)) as client:
        metadata = client.get("/fhir/metadata", headers={"host": "evil.example"})
    assert metadata.json()["implementation"]["url"] == "http://127.0.0.1:8123/fhir"


def test_an_mpo_photo_is_accepted_as_jpeg(client: TestClient[Any]) -> None:
    data = mpo_photo()
    form = client.post("/api/v1/analyze", files={"image": ("phone.jpg", data, "image/jpeg")})
    assert form.status_code == 200, form.text[:300]
    assert form.json()["image"] == {"width": 96, "height": 96, "media_type": "image/jpeg"}
    raw = client.post("/api/v1/classify", content=data, headers={"content-type": "image/jpeg"})
    assert raw.status_code == 200


@pytest.mark.parametrize(
    "path", ["/schema", "/schema/swagger", "/schema/redoc", "/schema/elements", "/schema/rapidoc"]
)
def test_no_interactive_schema_page_loads_scripts_from_elsewhere(
    client: TestClient[Any], path: str
) -> None:
    answer = client.get(path)
    assert not answer.headers.get("content-type", "").startswith("text/html")
    assert "<script" not in answer.text and "cdn." not in answer.text
    assert client.get("/schema/openapi.json").json()["openapi"].startswith("3.")
