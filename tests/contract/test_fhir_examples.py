"""Example `$diagnose` request/response pairs in contracts/examples/, checked for drift.

Each `<name>.request.json` is the body POSTed to `/fhir/DiagnosticReport/$diagnose` of a real
server; `<name>.response.json` holds the status, content type and body that came back, with
values that change from run to run (ids, urn:uuids, instants, hashes, base64 data, sizes,
probabilities) replaced by placeholders such as `<id>`, `urn:uuid:<uuid-1>`, `<instant>`.
The stored request is what gets posted, so the pair always belongs together; a request the
builders below would make differently (other than its image bytes) is drift too.

Regenerate after an intended change with `make contracts` (SKINSCREEN_UPDATE_CONTRACTS=1).
The photo is synthetic (made here): the skin6 photos may not be shipped.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.live_server import LiveServer, start_server, stop_server

EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "examples"
UPDATE = os.environ.get("SKINSCREEN_UPDATE_CONTRACTS") == "1"
FHIR = "application/fhir+json"
MAX_EXAMPLE_BYTES = 50_000
PATIENT_URN = "urn:uuid:5f0c6a8e-3b7d-4c1e-9a2f-8d4b6e1f0a23"
MEDIA_URN = "urn:uuid:9c2e7b14-6d3a-4f85-b0e9-1a7c5d2f8e46"

Json = dict[str, Any]


def synthetic_photo(size: int = 96) -> bytes:
    """A deterministic skin-toned JPEG: warm gradient, red papules and fine texture."""
    image = Image.new("RGB", (size, size))
    pixels = image.load()
    assert pixels is not None
    spots = [(30, 34, 7), (62, 28, 5), (48, 64, 8), (74, 70, 4), (20, 76, 3)]
    state = 12345
    for y in range(size):
        for x in range(size):
            state = (1103515245 * state + 12345) % 2**31
            noise = (state / 2**31 - 0.5) * 14
            shade = (x + y) / (2 * size)
            r, g, b = 222 - 40 * shade, 170 - 38 * shade, 138 - 34 * shade
            for cx, cy, radius in spots:
                distance = math.hypot(x - cx, y - cy) / radius
                if distance < 1.6:
                    weight = (1 - distance / 1.6) ** 1.5
                    r, g, b = r + (196 - r) * weight, g + (92 - g) * weight, b + (92 - b) * weight
            pixels[x, y] = (
                max(0, min(255, round(r + noise))),
                max(0, min(255, round(g + noise))),
                max(0, min(255, round(b + noise))),
            )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def jpeg_attachment(photo: bytes) -> Json:
    return {"contentType": "image/jpeg", "data": base64.b64encode(photo).decode()}


def parameters_inline(photo: bytes) -> Json:
    """(a) Parameters: inline Patient and an inline photo."""
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "subject",
                "resource": {
                    "resourceType": "Patient",
                    "id": "example-1",
                    "name": [{"use": "official", "family": "Doe", "given": ["Jane"]}],
                    "gender": "female",
                    "birthDate": "1980-02-03",
                },
            },
            {"name": "image", "valueAttachment": jpeg_attachment(photo)},
            {"name": "language", "valueCode": "en"},
            {"name": "history", "valueString": "Itchy red papules on the cheek for two weeks."},
        ],
    }


def synthea_bundle(photo: bytes) -> Json:
    """(b) A Synthea-style transaction Bundle: one Patient and one Media naming it."""
    patient = {
        "resourceType": "Patient",
        "id": "5f0c6a8e-3b7d-4c1e-9a2f-8d4b6e1f0a23",
        "identifier": [
            {
                "system": "https://github.com/synthetichealth/synthea",
                "value": "5f0c6a8e-3b7d-4c1e-9a2f-8d4b6e1f0a23",
            },
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
                    ]
                },
                "system": "http://hospital.smarthealthit.org",
                "value": "5f0c6a8e-3b7d-4c1e-9a2f-8d4b6e1f0a23",
            },
        ],
        "name": [{"use": "official", "family": "Vargas703", "given": ["Aurelio482"]}],
        "gender": "male",
        "birthDate": "1961-09-14",
        "communication": [
            {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}]}}
        ],
    }
    media = {
        "resourceType": "Media",
        "status": "completed",
        "subject": {"reference": PATIENT_URN},
        "content": jpeg_attachment(photo),
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": PATIENT_URN,
                "resource": patient,
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": MEDIA_URN,
                "resource": media,
                "request": {"method": "POST", "url": "Media"},
            },
        ],
    }


def parameters_output_bundle(photo: bytes) -> Json:
    """(c) output=bundle: the answer is a transaction Bundle to store on a FHIR server."""
    body = parameters_inline(photo)
    body["parameter"] = [p for p in body["parameter"] if p["name"] != "history"]
    body["parameter"].append({"name": "output", "valueCode": "bundle"})
    return body


def media_sound(_: bytes) -> Json:
    """(d) An audio Media as the image: 422 OperationOutcome."""
    audio = base64.b64encode(b"ID3\x03\x00\x00\x00\x00\x00\x00").decode()
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "image",
                "resource": {
                    "resourceType": "Media",
                    "id": "sound",
                    "status": "completed",
                    "content": {"contentType": "audio/mpeg", "data": audio},
                },
            }
        ],
    }


CASES: dict[str, tuple[Callable[[bytes], Json], int]] = {
    "diagnose-parameters-inline": (parameters_inline, 200),
    "diagnose-synthea-bundle": (synthea_bundle, 200),
    "diagnose-output-bundle": (parameters_output_bundle, 200),
    "diagnose-media-sound-422": (media_sound, 422),
}

_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX64 = re.compile(r"\b[0-9a-f]{64}\b")
_HEX32 = re.compile(r"\b[0-9a-f]{32}\b")
_PERCENT = re.compile(r"\b\d{1,3}(\.\d+)?\s?%")


class Normaliser:
    """Replaces run-dependent values by stable placeholders (urn:uuids numbered in order)."""

    def __init__(self, keep: set[str]) -> None:
        self.keep = keep  # strings that came from the request stay as they are
        self.uuids: dict[str, str] = {}

    def __call__(self, node: Any, key: str = "", parent: Json | None = None) -> Any:
        if isinstance(node, dict):
            return {k: self(v, k, node) for k, v in node.items()}
        if isinstance(node, list):
            return [self(item, key, parent) for item in node]
        if isinstance(node, float):  # probabilities vary in the last digits across machines
            return "<number>"
        if key == "size" and parent is not None and ("data" in parent or "hash" in parent):
            return "<size>"
        if not isinstance(node, str) or node in self.keep:
            return node
        return self.text(node, key)

    def text(self, value: str, key: str) -> str:
        if key == "data":
            raw = base64.b64decode(value)
            return "<base64 pdf>" if raw.startswith(b"%PDF") else f"<base64 {len(raw)} bytes>"
        if key == "hash":
            return "<sha1>"
        if _INSTANT.match(value):
            return "<instant>"
        value = _UUID.sub(self.uuid, value)
        value = _HEX64.sub("<sha256>", value)
        value = _HEX32.sub("<id>", value)
        return _PERCENT.sub("<n>%", value)

    def uuid(self, match: re.Match[str]) -> str:
        found = match.group(0)
        if found in self.keep:
            return found
        return self.uuids.setdefault(found, f"urn:uuid:<uuid-{len(self.uuids) + 1}>")


def strings(node: Any) -> Iterator[str]:
    """Every string value in a JSON document."""
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def dump(document: Json) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def without_data(document: Json) -> Any:
    """The request with attachment bytes blanked (JPEG encoders differ across machines)."""
    return Normaliser(set())(document)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service with pinned settings, so absolute links and the narrator do not vary."""
    live = start_server(
        tmp_path_factory.mktemp("examples"),
        {
            "SKINSCREEN_PUBLIC_BASE_URL": "http://127.0.0.1:8000",
            "SKINSCREEN_NARRATOR": "knowledge",
            "SKINSCREEN_DEFAULT_LANGUAGE": "en",
            "SKINSCREEN_FHIR_WRITE_BACK": "false",
        },
    )
    yield live
    stop_server(live)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fhir_example_has_not_drifted(server: LiveServer, name: str) -> None:
    build, expected_status = CASES[name]
    request_path = EXAMPLES / f"{name}.request.json"
    response_path = EXAMPLES / f"{name}.response.json"
    regenerate = "review the change, then run `make contracts` (SKINSCREEN_UPDATE_CONTRACTS=1)"
    built = build(synthetic_photo())
    if UPDATE:
        EXAMPLES.mkdir(parents=True, exist_ok=True)
        request_path.write_text(dump(built), encoding="utf-8")
    assert request_path.is_file(), f"{request_path} missing: {regenerate}"
    request = json.loads(request_path.read_text(encoding="utf-8"))
    assert without_data(request) == without_data(built), f"{name} request drifted: {regenerate}"

    answer = httpx.post(
        f"{server.url}/fhir/DiagnosticReport/$diagnose",
        content=json.dumps(request).encode(),
        headers={"content-type": FHIR, "accept": FHIR},
        timeout=120,
    )
    assert answer.status_code == expected_status, answer.text
    normalise = Normaliser(set(strings(request)))
    current = {
        "status": answer.status_code,
        "contentType": answer.headers["content-type"],
        "body": normalise(answer.json()),
    }
    if UPDATE:
        response_path.write_text(dump(current), encoding="utf-8")
    assert response_path.is_file(), f"{response_path} missing: {regenerate}"
    stored = json.loads(response_path.read_text(encoding="utf-8"))
    assert stored == json.loads(dump(current)), f"{name} response drifted: {regenerate}"
    for path in (request_path, response_path):
        assert path.stat().st_size < MAX_EXAMPLE_BYTES, f"{path.name} is too large"
