"""The FHIR door over real HTTP: $diagnose sync/async, reads, conformance, errors.

Every resource the service emits is validated against the official R4 JSON Schema, fhirclient
(R4) and fhir.resources (R4B).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.fhir_checks import assert_valid_r4
from tests.support.live_server import LiveServer

FHIR = "application/fhir+json"


def parameters(image: bytes, **extra: Any) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {
            "name": "subject",
            "resource": {
                "resourceType": "Patient",
                "id": "p1",
                "name": [{"family": "Nguyễn", "given": ["Thị Hoa"]}],
                "gender": "female",
                "birthDate": "1980-02-03",
            },
        },
        {
            "name": "image",
            "valueAttachment": {
                "contentType": "image/jpeg",
                "data": base64.b64encode(image).decode(),
            },
        },
    ]
    params += [{"name": k, "valueCode": v} for k, v in extra.items()]
    return {"resourceType": "Parameters", "parameter": params}


def post(server: LiveServer, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{server.url}/fhir/DiagnosticReport/$diagnose",
        content=content,
        headers={"content-type": FHIR, **headers},
        timeout=60,
    )


def test_parameters_sync_report(
    live_server: LiveServer, skin_jpeg: bytes, shared_dir: Path
) -> None:
    r = post(live_server, parameters(skin_jpeg, language="vi"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR)
    report = r.json()
    assert_valid_r4(report, shared_dir)
    assert report["resourceType"] == "DiagnosticReport"
    assert report["status"] == "preliminary"  # an unreviewed AI result
    assert report["meta"]["security"][0]["code"] == "AIAST"
    form = report["presentedForm"][0]
    pdf = base64.b64decode(form["data"])
    assert pdf.startswith(b"%PDF") and form["size"] == len(pdf) and form["language"] == "vi"
    read = httpx.get(f"{live_server.url}/fhir/DiagnosticReport/{report['id']}")
    assert read.status_code == 200 and read.json()["id"] == report["id"]
    raw = httpx.get(
        f"{live_server.url}/fhir/Binary/{report['id']}", headers={"accept": "application/pdf"}
    )
    assert raw.content == pdf
    binary = httpx.get(f"{live_server.url}/fhir/Binary/{report['id']}", headers={"accept": FHIR})
    assert_valid_r4(binary.json(), shared_dir)


def test_synthea_bundles_give_reports_for_their_patient(
    live_server: LiveServer, skin_jpeg: bytes, shared_dir: Path
) -> None:
    for path in sorted((shared_dir / "fhir" / "r4" / "synthea").glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        bundle["entry"].append(
            {
                "fullUrl": "urn:uuid:6b0d1c9e-0000-4000-8000-00000000abcd",
                "resource": {
                    "resourceType": "Media",
                    "status": "completed",
                    "subject": {"reference": patient["fullUrl"]},
                    "content": {
                        "contentType": "image/jpeg",
                        "data": base64.b64encode(skin_jpeg).decode(),
                    },
                },
                "request": {"method": "POST", "url": "Media"},
            }
        )
        r = post(live_server, bundle)
        assert r.status_code == 200, (path.name, r.text)
        report = r.json()
        assert_valid_r4(report, shared_dir)
        # a report that travels alone keeps who it is about, not a Bundle-local urn:uuid
        assert "reference" not in report["subject"], report["subject"]
        identifiers = patient["resource"].get("identifier") or []
        if identifiers:
            assert report["subject"]["identifier"]["value"] == identifiers[0]["value"]
        assert report["subject"]["display"]


def test_bundle_output(live_server: LiveServer, skin_jpeg: bytes, shared_dir: Path) -> None:
    r = post(live_server, parameters(skin_jpeg, output="bundle"))
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "transaction"
    assert_valid_r4(bundle, shared_dir)
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"DiagnosticReport", "Observation", "Device", "Provenance", "Binary"} <= kinds
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in bundle["entry"])


def test_async_poll_then_result(
    live_server: LiveServer, skin_jpeg: bytes, shared_dir: Path
) -> None:
    r = post(live_server, parameters(skin_jpeg), prefer="respond-async")
    assert r.status_code == 202
    status_url = r.headers["content-location"]
    assert "monitor" in r.headers["link"]
    deadline = time.monotonic() + 60
    while True:
        poll = httpx.get(status_url, timeout=10)
        if poll.status_code != 202:
            break
        assert poll.headers["x-progress"]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert poll.status_code == 200
    assert_valid_r4(poll.json(), shared_dir)


def test_media_example_gif_flows_through_the_gate(
    live_server: LiveServer, shared_dir: Path
) -> None:
    media = json.loads((shared_dir / "fhir/r4/examples/Media-example.json").read_text())
    body = {"resourceType": "Parameters", "parameter": [{"name": "image", "resource": media}]}
    r = post(live_server, body)
    assert r.status_code == 200, r.text
    report = r.json()
    assert_valid_r4(report, shared_dir)


def test_binary_f006_flows_through(live_server: LiveServer, shared_dir: Path) -> None:
    binary = json.loads((shared_dir / "fhir/r4/examples/Binary-f006.json").read_text())
    body = {"resourceType": "Parameters", "parameter": [{"name": "image", "resource": binary}]}
    r = post(live_server, body)
    assert r.status_code == 200, r.text
    assert_valid_r4(r.json(), shared_dir)


def test_conformance(live_server: LiveServer, shared_dir: Path) -> None:
    cap = httpx.get(f"{live_server.url}/fhir/metadata").json()
    assert_valid_r4(cap, shared_dir)
    assert cap["fhirVersion"] == "4.0.1"
    op = httpx.get(f"{live_server.url}/fhir/OperationDefinition/skin-diagnose").json()
    assert_valid_r4(op, shared_dir)


def outcome(r: httpx.Response, status: int, shared_dir: Path) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert_valid_r4(body, shared_dir)
    return body


def test_errors_are_operation_outcomes(
    live_server: LiveServer, skin_jpeg: bytes, shared_dir: Path
) -> None:
    outcome(post(live_server, b"{not json"), 400, shared_dir)
    outcome(post(live_server, {"foo": 1}), 400, shared_dir)
    outcome(post(live_server, {"resourceType": "Patient"}), 422, shared_dir)
    no_image = {
        "resourceType": "Parameters",
        "parameter": [{"name": "language", "valueCode": "en"}],
    }
    outcome(post(live_server, no_image), 422, shared_dir)
    sound = json.loads((shared_dir / "fhir/r4/examples/Media-sound.json").read_text())
    body = outcome(
        post(
            live_server,
            {"resourceType": "Parameters", "parameter": [{"name": "image", "resource": sound}]},
        ),
        422,
        shared_dir,
    )
    assert body["issue"][0]["expression"]
    foreign = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "image",
                "valueAttachment": {
                    "contentType": "image/jpeg",
                    "url": "http://169.254.169.254/latest/x.jpg",
                },
            }
        ],
    }
    outcome(post(live_server, foreign), 422, shared_dir)
    outcome(
        post(live_server, parameters(skin_jpeg), accept="application/fhir+xml"), 406, shared_dir
    )
    r = httpx.get(f"{live_server.url}/fhir/metadata", headers={"accept": "application/fhir+xml"})
    outcome(r, 406, shared_dir)
    r = httpx.post(
        f"{live_server.url}/fhir/DiagnosticReport/$diagnose",
        content=json.dumps(parameters(skin_jpeg)),
        headers={"content-type": "application/fhir+json; fhirVersion=5.0"},
    )
    outcome(r, 415, shared_dir)
    r = httpx.post(
        f"{live_server.url}/fhir/DiagnosticReport/$diagnose",
        content=b"<x/>",
        headers={"content-type": "application/fhir+xml"},
    )
    outcome(r, 415, shared_dir)
    outcome(httpx.get(f"{live_server.url}/fhir/DiagnosticReport/{'f' * 32}"), 404, shared_dir)


def test_30_mb_payload_is_413(live_server: LiveServer, shared_dir: Path) -> None:
    big = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "image",
                "valueAttachment": {"contentType": "image/jpeg", "data": "A" * (30 * 1024 * 1024)},
            }
        ],
    }
    outcome(post(live_server, big), 413, shared_dir)
