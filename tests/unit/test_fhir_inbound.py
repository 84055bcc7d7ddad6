"""Inbound `$diagnose` parsing with real HL7 / Synthea inputs, and the SSRF-guarded fetch."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from fhir_mappings.inbound import SubjectRef, parse_diagnose_request
from fhir_mappings.outbound import PdfDocument, diagnostic_report, transaction_bundle
from fhir_mappings.outcome import operation_outcome
from service import errors
from service.fhir_server import FhirServer
from service.images import decode_image
from service.settings import Settings
from tests.support.factories import make_report
from tests.support.fhir_checks import assert_valid_r4

TODAY = dt.date(2025, 1, 1)


def load(shared_dir: Path, name: str) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads(
        (shared_dir / "fhir" / "r4" / "examples" / f"{name}.json").read_text(encoding="utf-8")
    )
    return resource


def parameters(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parts)}


def jpeg_attachment(data: bytes) -> dict[str, Any]:
    return {
        "name": "image",
        "valueAttachment": {"contentType": "image/jpeg", "data": base64.b64encode(data).decode()},
    }


def expect(
    error: type[errors.ServiceError], body: Any, expression: str | None
) -> errors.ServiceError:
    with pytest.raises(error) as caught:
        parse_diagnose_request(body, today=TODAY)
    if expression is not None:
        assert caught.value.expression == [expression]
    return caught.value


def test_every_patient_example_maps(shared_dir: Path, skin_jpeg: bytes) -> None:
    paths = sorted((shared_dir / "fhir" / "r4" / "examples").glob("Patient-*.json"))
    assert len(paths) == 7
    mapped = {}
    for path in paths:
        patient = json.loads(path.read_text(encoding="utf-8"))
        body = parameters({"name": "subject", "resource": patient}, jpeg_attachment(skin_jpeg))
        parsed = parse_diagnose_request(body, today=TODAY)
        assert parsed.subject.reference == f"Patient/{patient['id']}"
        mapped[patient["id"]] = parsed.patient
    assert mapped["example"].name == "Peter James Chalmers"
    assert (mapped["example"].age, mapped["example"].sex) == (50, "male")
    assert mapped["ch-example"].name == "张无忌"
    assert mapped["dicom"].age is None and mapped["dicom"].name == "MINT_TEST"
    assert mapped["animal"].sex == "female"
    assert mapped["f001"].identifier == "738472983"


def test_media_example_gif_and_binary_jpeg(shared_dir: Path) -> None:
    media = parse_diagnose_request(
        parameters(
            {"name": "image", "resource": load(shared_dir, "Media-example")},
            {"name": "language", "valueCode": "vi"},
            {"name": "output", "valueCode": "bundle"},
        ),
        today=TODAY,
    )
    assert media.image.content_type == "image/gif"
    assert media.image.reference is None  # inline: not on any server, so the report contains it
    assert media.image.data is not None
    assert Image.open(io.BytesIO(media.image.data)).size == (126, 145)
    assert (media.language, media.output) == ("vi", "bundle")
    binary = parse_diagnose_request(
        parameters({"name": "image", "resource": load(shared_dir, "Binary-f006")}), today=TODAY
    )
    assert binary.image.content_type == "image/jpeg" and binary.image.data is not None
    assert decode_image(binary.image.data).media_type == "image/jpeg"


def test_document_reference_with_image(skin_jpeg: bytes) -> None:
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "content": [
            {"attachment": {"contentType": "application/pdf", "url": "http://x/doc.pdf"}},
            {
                "attachment": {
                    "contentType": "image/jpeg",
                    "data": base64.b64encode(skin_jpeg).decode(),
                }
            },
        ],
    }
    parsed = parse_diagnose_request(parameters({"name": "image", "resource": document}))
    assert parsed.image.data == skin_jpeg
    assert parsed.image.expression == "Parameters.parameter[0].resource.content[1].attachment"


@pytest.mark.parametrize(
    "path",
    sorted((Path(Settings().shared_dir) / "fhir" / "r4" / "synthea").glob("*.json")),
    ids=lambda p: p.stem[:12],
)
def test_synthea_bundle_with_added_media(path: Path, shared_dir: Path, skin_jpeg: bytes) -> None:
    bundle = json.loads(path.read_text(encoding="utf-8"))
    patient_entry = bundle["entry"][0]
    media_url = "urn:uuid:5f0c1d0e-1111-4222-8333-944455556666"
    bundle["entry"].append(
        {
            "fullUrl": media_url,
            "resource": {
                "resourceType": "Media",
                "status": "completed",
                "subject": {"reference": patient_entry["fullUrl"]},
                "content": {
                    "contentType": "image/jpeg",
                    "data": base64.b64encode(skin_jpeg).decode(),
                },
            },
            "request": {"method": "POST", "url": "Media"},
        }
    )
    parsed = parse_diagnose_request(bundle, today=TODAY)
    assert parsed.image.data == skin_jpeg and parsed.image.reference == media_url
    assert parsed.subject.reference == patient_entry["fullUrl"]
    assert parsed.patient.birth_date == patient_entry["resource"]["birthDate"]
    assert parsed.patient.sex == patient_entry["resource"]["gender"]
    pdf = PdfDocument(b"%PDF-1.7 x", "Report", "en")
    report = diagnostic_report(make_report(), conclusion="x", pdf=pdf, subject=parsed.subject)
    # the Bundle-local urn:uuid would dangle in a report that travels alone: identifier + name
    assert "reference" not in report["subject"]
    assert (
        report["subject"]["identifier"]["value"]
        == patient_entry["resource"]["identifier"][0]["value"]
    )
    assert report["subject"]["display"]
    assert_valid_r4(report, shared_dir)
    out = transaction_bundle(make_report(), conclusion="x", pdf=pdf, subject=parsed.subject)
    assert_valid_r4(out, shared_dir)
    assert any(e["fullUrl"] == patient_entry["fullUrl"] for e in out["entry"])


def test_media_sound_is_refused_precisely(shared_dir: Path, skin_jpeg: bytes) -> None:
    body = parameters(
        {"name": "language", "valueCode": "en"},
        {"name": "image", "resource": load(shared_dir, "Media-sound")},
    )
    error = expect(
        errors.UnsupportedAttachment, body, "Parameters.parameter[1].resource.content.contentType"
    )
    assert error.status == 422 and "audio/mpeg" in error.detail
    assert_valid_r4(operation_outcome(error), shared_dir)


def test_bundle_picks_the_image_over_audio(shared_dir: Path, skin_jpeg: bytes) -> None:
    sound = load(shared_dir, "Media-sound")
    image = {
        "resourceType": "Binary",
        "contentType": "image/jpeg",
        "data": base64.b64encode(skin_jpeg).decode(),
    }
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": sound}, {"resource": image}],
    }
    assert parse_diagnose_request(bundle).image.data == skin_jpeg
    bundle["entry"].pop()
    expect(errors.UnsupportedAttachment, bundle, "Bundle.entry[0].resource.content.contentType")


@pytest.mark.parametrize(
    ("body", "error", "status", "expression"),
    [
        ({"foo": 1}, errors.InvalidFhir, 400, "resourceType"),
        ([1, 2], errors.InvalidFhir, 400, None),
        ({"resourceType": "Foo"}, errors.InvalidFhir, 400, "resourceType"),
        (
            {"resourceType": "Observation", "status": "final"},
            errors.FhirUnprocessable,
            422,
            "Observation",
        ),
        (
            {"resourceType": "Parameters", "parameter": [{"name": "language", "valueCode": "en"}]},
            errors.FhirUnprocessable,
            422,
            "Parameters.parameter",
        ),
        (
            {
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "image",
                        "valueAttachment": {"contentType": "image/jpeg", "data": "!!not base64"},
                    }
                ],
            },
            errors.InvalidFhir,
            400,
            "Parameters.parameter[0].valueAttachment.data",
        ),
        (
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "subject", "resource": {"resourceType": "Patient", "gender": "robot"}}
                ],
            },
            errors.FhirUnprocessable,
            422,
            "Parameters.parameter[0].resource.gender",
        ),
        (
            {
                "resourceType": "Parameters",
                "parameter": [
                    {
                        "name": "subject",
                        "resource": {"resourceType": "Patient", "name": [{"given": "Ann"}]},
                    }
                ],
            },
            errors.InvalidFhir,
            400,
            "Parameters.parameter[0].resource.name[0].given",
        ),
        (
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "subject", "resource": {"resourceType": "Nope"}}],
            },
            errors.InvalidFhir,
            400,
            "Parameters.parameter[0].resource.resourceType",
        ),
        (
            {"resourceType": "Parameters", "parameter": [{"name": "language", "valueCode": "fr"}]},
            errors.UnsupportedLanguage,
            422,
            "Parameters.parameter[0].valueCode",
        ),
        (
            {"resourceType": "Parameters", "parameter": [{"name": "colour", "valueCode": "x"}]},
            errors.FhirUnprocessable,
            422,
            "Parameters.parameter[0].name",
        ),
        (
            {"resourceType": "Bundle", "type": "searchset"},
            errors.FhirUnprocessable,
            422,
            "Bundle.type",
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient"}}],
            },
            errors.FhirUnprocessable,
            422,
            "Bundle.entry",
        ),
    ],
)
def test_precise_errors(
    body: Any,
    error: type[errors.ServiceError],
    status: int,
    expression: str | None,
    shared_dir: Path,
) -> None:
    caught = expect(error, body, expression)
    assert caught.status == status
    assert_valid_r4(operation_outcome(caught), shared_dir)


def test_dangling_urn_reference(skin_jpeg: bytes) -> None:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001",
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:aaaaaaaa-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Media",
                    "status": "completed",
                    "subject": {"reference": "urn:uuid:aaaaaaaa-0000-4000-8000-0000000000ff"},
                    "content": {
                        "contentType": "image/jpeg",
                        "data": base64.b64encode(skin_jpeg).decode(),
                    },
                },
                "request": {"method": "POST", "url": "Media"},
            },
        ],
    }
    expect(errors.FhirUnprocessable, bundle, "Bundle.entry[1].resource.subject.reference")
    fixed = copy.deepcopy(bundle)
    fixed["entry"][1]["resource"]["subject"]["reference"] = fixed["entry"][0]["fullUrl"]
    assert parse_diagnose_request(fixed).subject == SubjectRef(
        fixed["entry"][0]["fullUrl"], fixed["entry"][0]["resource"]
    )


def test_attachment_hash_and_url() -> None:
    data = base64.b64encode(b"\xff\xd8\xff abc").decode()
    body = parameters(
        {
            "name": "image",
            "valueAttachment": {"contentType": "image/jpeg", "data": data, "hash": "AAAA"},
        }
    )
    expect(errors.FhirUnprocessable, body, "Parameters.parameter[0].valueAttachment.hash")
    by_url = parse_diagnose_request(
        parameters(
            {"name": "image", "valueAttachment": {"contentType": "image/png", "url": "Binary/abc"}}
        )
    )
    assert (by_url.image.url, by_url.image.data) == ("Binary/abc", None)


# --- fetch: a real HTTP server on loopback ------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    jpeg = b""

    def do_GET(self) -> None:
        port = self.server.server_address[1]  # type: ignore[index]
        routes: dict[str, tuple[int, dict[str, str], bytes]] = {
            "/fhir/Binary/img": (200, {"Content-Type": "image/jpeg"}, self.jpeg),
            "/fhir/Binary/json": (
                200,
                {"Content-Type": "application/fhir+json"},
                json.dumps(
                    {
                        "resourceType": "Binary",
                        "contentType": "image/jpeg",
                        "data": base64.b64encode(self.jpeg).decode(),
                    }
                ).encode(),
            ),
            "/fhir/in": (302, {"Location": "/fhir/Binary/img"}, b""),
            "/fhir/out": (302, {"Location": f"http://localhost:{port}/fhir/Binary/img"}, b""),
            "/other/img": (200, {"Content-Type": "image/jpeg"}, self.jpeg),
        }
        if self.path == "/fhir/huge":  # no Content-Length: the cap must cut the stream
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"\0" * 65536)
            return
        status, headers, body = routes.get(self.path, (404, {}, b"missing"))
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def server(skin_jpeg: bytes) -> Iterator[int]:
    _Handler.jpeg = skin_jpeg
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def fetch(url: str, port: int | None, **overrides: Any) -> bytes:
    base = f"http://127.0.0.1:{port}/fhir" if port else None
    settings = Settings(fhir_server_url=base, fhir_fetch_timeout_s=5, **overrides)

    async def go() -> bytes:
        server = FhirServer(settings)  # the client bootstrap builds (no redirects, no proxies)
        try:
            return await server.fetch_attachment(url)
        finally:
            await server.aclose()

    return asyncio.run(go())


def test_fetch_allowed_urls(server: int, skin_jpeg: bytes) -> None:
    assert fetch("Binary/img", server) == skin_jpeg
    assert fetch(f"http://127.0.0.1:{server}/fhir/Binary/img", server) == skin_jpeg
    assert fetch(f"HTTP://127.0.0.1:{server}/fhir/./Binary/json", server) == skin_jpeg
    assert fetch("in", server) == skin_jpeg


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/other/img",
        "http://127.0.0.1:{port}/fhir/../other/img",
        "http://127.0.0.1:{port}/fhir/%2e%2e/other/img",
        "http://127.0.0.1:{port}@localhost:{port}/fhir/Binary/img",
        "http://localhost:{port}/fhir/Binary/img",
        "http://127.0.0.1:1/fhir/Binary/img",
        "https://127.0.0.1:{port}/fhir/Binary/img",
        "file:///etc/passwd",
        "out",
    ],
)
def test_fetch_refuses_other_targets(server: int, url: str) -> None:
    with pytest.raises(errors.FetchNotAllowed):
        fetch(url.format(port=server), server)


def test_fetch_limits_and_failures(server: int) -> None:
    with pytest.raises(errors.FetchNotAllowed, match="no FHIR server configured"):
        fetch("Binary/img", None)
    with pytest.raises(errors.PayloadTooLarge):
        fetch("huge", server, max_upload_bytes=1_000_000)
    with pytest.raises(errors.Unprocessable, match="HTTP 404"):
        fetch("Binary/nothing", server)
