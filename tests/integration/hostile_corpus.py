"""A corpus of bad input for every door, generated in code, and a raw HTTP/1.1 client to send it.

Each `Probe` is one request — method, raw request target, raw header bytes, raw body — and the
statuses it may get (`expect`; None: anything below 500). The doors: multipart uploads to the
four REST upload routes, raw image and DICOM bodies, FHIR `$diagnose` (Parameters and Bundles),
DICOM STOW-RS, paths, query values and headers (Last-Event-ID, Accept, Content-Type,
Authorization, Accept-Language, Prefer, Origin). The client writes the request bytes itself (no
library normalises a path, re-encodes a header or fixes a boundary) and reads the answer until
the server closes, within a deadline: a request that takes longer is a hang.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from tests.dicom_factory import vl_photo

UPLOAD_DOORS = (
    "/api/v1/classify",
    "/api/v1/analyze",
    "/api/v1/diagnose",
    "/api/v1/diagnose-stream",
)
DIAGNOSE = "/fhir/DiagnosticReport/$diagnose"
FHIR_JSON = b"application/fhir+json"
ANY: frozenset[int] | None = None
CLIENT_ERROR = frozenset(range(400, 500))
INVALID = frozenset({422})
BAD = frozenset({400})
JOB = "{job}"  # replaced by a finished job's id of the caller


@dataclass(frozen=True)
class Probe:
    """One hostile request and the statuses it may be answered with."""

    door: str
    name: str
    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    expect: frozenset[int] | None = CLIENT_ERROR

    @property
    def label(self) -> str:
        return f"{self.door}/{self.name} {self.method} {self.target[:80]}"


@dataclass
class Answer:
    """What came back (status 0: no parsable answer before the deadline)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    elapsed_s: float = 0.0
    error: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


# --- the raw client ------------------------------------------------------------------------------


def send(
    port: int, probe: Probe, extra: tuple[tuple[bytes, bytes], ...], deadline_s: float
) -> Answer:
    """Write the request bytes as they are; read until the server closes or the deadline."""
    target = probe.target.encode("latin-1")
    lines = [probe.method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1:%d" % port]
    lines += [b"Connection: close", b"Content-Length: %d" % len(probe.body)]
    lines += [name + b": " + value for name, value in (*probe.headers, *extra)]
    request = b"\r\n".join(lines) + b"\r\n\r\n" + probe.body
    started = time.monotonic()
    received = bytearray()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=deadline_s) as sock:
            sock.sendall(request)
            while True:
                left = deadline_s - (time.monotonic() - started)
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    except TimeoutError:
        return Answer(
            0, elapsed_s=time.monotonic() - started, error="no answer before the deadline"
        )
    except OSError as exc:
        if not received:
            return Answer(0, elapsed_s=time.monotonic() - started, error=f"{type(exc).__name__}")
    answer = parse_response(bytes(received))
    answer.elapsed_s = time.monotonic() - started
    return answer


def parse_response(data: bytes) -> Answer:
    """Status, headers (lower-case names) and the de-chunked body of one HTTP/1.1 response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Answer(0, error=f"unparsable answer {data[:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = dechunk(body)
    return Answer(status, headers, body)


def dechunk(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            return bytes(out)
        size = int(data[pos:end].split(b";")[0] or b"0", 16)
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2


# --- payloads ------------------------------------------------------------------------------------


def jpeg(size: tuple[int, int] = (96, 96)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 150, 130)).save(buffer, format="JPEG")
    return buffer.getvalue()


def mpo() -> bytes:
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (96, 96), (200, 150, 130)), Image.new("RGB", (96, 96))
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    return buffer.getvalue()


def png_bomb() -> bytes:
    """8000 x 8000 pixels (over the 40 M pixel limit) in a few kB."""
    buffer = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buffer, format="PNG")
    return buffer.getvalue()


def dicom(**header: str) -> bytes:
    values = {"PatientName": "Doe^Jane", "PatientID": "P1", **header}
    return vl_photo(Image.new("RGB", (64, 64), (190, 140, 120)), patient=values)


def multipart(boundary: bytes, *parts: tuple[bytes, bytes, bytes | None]) -> bytes:
    """A multipart/form-data body: (field name, content, filename or None)."""
    out = b""
    for name, content, filename in parts:
        disposition = b'form-data; name="' + name + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        out += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        if filename is not None:
            out += b"Content-Type: image/jpeg\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


def form_type(boundary: bytes) -> tuple[bytes, bytes]:
    return (b"Content-Type", b"multipart/form-data; boundary=" + boundary)


def parameters(*extra: dict[str, Any], image: dict[str, Any] | None = None) -> bytes:
    attachment = image or {"contentType": "image/jpeg", "data": base64.b64encode(jpeg()).decode()}
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "image", "valueAttachment": attachment}, *extra],
    }
    return json.dumps(body).encode()


def with_patient(**patient: Any) -> bytes:
    return parameters({"name": "subject", "resource": {"resourceType": "Patient", **patient}})


def stow_body(boundary: bytes, *instances: bytes) -> bytes:
    out = b""
    for instance in instances:
        out += (
            b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + instance + b"\r\n"
        )
    return out + b"--" + boundary + b"--\r\n"


def stow_type(boundary: bytes) -> tuple[bytes, bytes]:
    return (b"Content-Type", b'multipart/related; type="application/dicom"; boundary=' + boundary)


# --- the corpus ----------------------------------------------------------------------------------


def upload_probes() -> Iterator[Probe]:
    """Every multipart variant against each of the four upload doors."""
    b = b"hostile-boundary"
    image = (b"image", jpeg(), b"p.jpg")
    variants: list[tuple[str, bytes, tuple[tuple[bytes, bytes], ...], frozenset[int] | None]] = [
        ("no-image-field", multipart(b, (b"patient_name", b"Kim", None)), (form_type(b),), INVALID),
        (
            "two-image-fields",
            multipart(b, image, (b"image", jpeg(), b"q.jpg")),
            (form_type(b),),
            INVALID,
        ),
        ("empty-image", multipart(b, (b"image", b"", b"p.jpg")), (form_type(b),), INVALID),
        (
            "garbage-image",
            multipart(b, (b"image", b"\x00\xffnot an image" * 50, b"p.jpg")),
            (form_type(b),),
            INVALID,
        ),
        (
            "truncated-jpeg",
            multipart(b, (b"image", jpeg()[:200], b"p.jpg")),
            (form_type(b),),
            INVALID,
        ),
        ("image-as-text-field", multipart(b, (b"image", b"hello", None)), (form_type(b),), INVALID),
        (
            "age-underscores",
            multipart(b, image, (b"patient_age", b"1_0_0", None)),
            (form_type(b),),
            INVALID,
        ),
        (
            "age-5000-digits",
            multipart(b, image, (b"patient_age", b"9" * 5000, None)),
            (form_type(b),),
            INVALID,
        ),
        (
            "age-arabic-digits",
            multipart(b, image, (b"patient_age", "١٢".encode(), None)),
            (form_type(b),),
            INVALID,
        ),
        (
            "name-201-chars",
            multipart(b, image, (b"patient_name", b"N" * 201, None)),
            (form_type(b),),
            INVALID,
        ),
        (
            "name-nul",
            multipart(b, image, (b"patient_name", b"Kim\x00Lee", None)),
            (form_type(b),),
            INVALID,
        ),
        (
            "name-not-utf8",
            multipart(b, image, (b"patient_name", b"\xff\xfe\xfd", None)),
            (form_type(b),),
            INVALID,
        ),
        (
            "history-4001-chars",
            multipart(b, image, (b"history", b"h" * 4001, None)),
            (form_type(b),),
            INVALID,
        ),
        (
            "language-unknown",
            multipart(b, image, (b"language", b"../../etc", None)),
            (form_type(b),),
            INVALID,
        ),
        (
            "sex-unknown",
            multipart(b, image, (b"patient_sex", b"robot", None)),
            (form_type(b),),
            INVALID,
        ),
        ("boundary-200-chars", multipart(b"x" * 200, image), (form_type(b"x" * 200),), BAD),
        ("no-boundary", multipart(b, image), ((b"Content-Type", b"multipart/form-data"),), BAD),
        ("body-not-multipart", b"\x00" * 300, (form_type(b),), CLIENT_ERROR),
        ("unterminated", multipart(b, image)[:-40], (form_type(b),), CLIENT_ERROR),
        (
            "dicom-20000-char-name",
            multipart(b, (b"image", dicom(PatientName="A" * 20_000), b"p.dcm")),
            (form_type(b),),
            INVALID,
        ),
        (
            "png-bomb",
            multipart(b, (b"image", png_bomb(), b"p.png")),
            (form_type(b),),
            frozenset({413}),
        ),
        (
            "2000-fields",
            multipart(b, image, *[(b"f%d" % i, b"v", None) for i in range(2000)]),
            (form_type(b),),
            ANY,
        ),
    ]
    for door in UPLOAD_DOORS:
        for name, body, headers, expect in variants:
            yield Probe("upload", name, "POST", door, headers, body, expect)


def raw_body_probes() -> Iterator[Probe]:
    jpeg_type = (b"Content-Type", b"image/jpeg")
    dicom_type = (b"Content-Type", b"application/dicom")
    cases: list[tuple[str, str, tuple[tuple[bytes, bytes], ...], bytes, frozenset[int] | None]] = [
        ("jpeg-garbage", "", (jpeg_type,), b"\xff\xd8" + b"\x00" * 500, INVALID),
        (
            "png-truncated",
            "",
            ((b"Content-Type", b"image/png"),),
            b"\x89PNG\r\n\x1a\n" + b"\x00" * 20,
            INVALID,
        ),
        (
            "webp-garbage",
            "",
            ((b"Content-Type", b"image/webp"),),
            b"RIFF\x00\x00\x00\x00WEBP",
            INVALID,
        ),
        ("empty", "", (jpeg_type,), b"", INVALID),
        ("text-plain", "", ((b"Content-Type", b"text/plain"),), b"hello", frozenset({415})),
        ("no-content-type", "", (), jpeg(), frozenset({415})),
        (
            "content-type-5000",
            "",
            ((b"Content-Type", b"image/" + b"j" * 5000),),
            jpeg(),
            frozenset({415}),
        ),
        (
            "content-type-obs-text",
            "",
            ((b"Content-Type", b"image/jpeg; charset=\xff"),),
            jpeg(),
            ANY,
        ),
        ("mpo-photo", "", (jpeg_type,), mpo(), frozenset({200})),
        ("dicom-garbage", "", (dicom_type,), b"\x00" * 128 + b"DICM" + b"\xff" * 200, INVALID),
        ("dicom-truncated", "", (dicom_type,), dicom()[:400], INVALID),
        ("dicom-20000-char-name", "", (dicom_type,), dicom(PatientName="A" * 20_000), INVALID),
        ("dicom-4-name-groups", "", (dicom_type,), dicom(PatientName="a=b=c=d"), INVALID),
        ("dicom-future-birth", "", (dicom_type,), dicom(PatientBirthDate="21990101"), INVALID),
        ("dicom-birth-1800", "", (dicom_type,), dicom(PatientBirthDate="18000101"), INVALID),
        ("dicom-age-999", "", (dicom_type,), dicom(PatientAge="999Y"), INVALID),
        ("dicom-long-id", "", (dicom_type,), dicom(PatientID="P" * 65), INVALID),
        ("query-age-underscores", "?patient_age=1_0_0", (jpeg_type,), jpeg(), INVALID),
        ("query-age-superscript", "?patient_age=%C2%B2", (jpeg_type,), jpeg(), INVALID),
        ("query-name-201", "?patient_name=" + "n" * 201, (jpeg_type,), jpeg(), INVALID),
        ("query-name-nul", "?patient_name=a%00b", (jpeg_type,), jpeg(), INVALID),
        ("query-language", "?language=" + "x" * 3000, (jpeg_type,), jpeg(), INVALID),
        ("query-explain", "?explain=maybe", (jpeg_type,), jpeg(), BAD),
        ("query-percent-garbage", "?patient_name=%ff%fe%", (jpeg_type,), jpeg(), ANY),
    ]
    for name, query, headers, body, expect in cases:
        yield Probe("raw", name, "POST", "/api/v1/classify" + query, headers, body, expect)


def fhir_probes() -> Iterator[Probe]:
    fhir = (b"Content-Type", FHIR_JSON)
    bundle_no_image = json.dumps(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Patient"}}],
        }
    ).encode()
    dangling = json.dumps(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {
                    "fullUrl": "urn:uuid:1d7f2b60-3a0e-4d4c-8c1e-5b9a7f3e2c44",
                    "resource": {
                        "resourceType": "Media",
                        "status": "completed",
                        "subject": {"reference": "urn:uuid:" + "0" * 5000},
                        "content": {
                            "contentType": "image/jpeg",
                            "data": base64.b64encode(jpeg()).decode(),
                        },
                    },
                }
            ],
        }
    ).encode()
    cases: list[tuple[str, str, tuple[tuple[bytes, bytes], ...], bytes, frozenset[int] | None]] = [
        ("nested-10000", "", (fhir,), b"[" * 10_000 + b"]" * 10_000, BAD),
        ("objects-nested-5000", "", (fhir,), b'{"a":' * 5000 + b"1" + b"}" * 5000, BAD),
        (
            "number-5000-digits",
            "",
            (fhir,),
            b'{"resourceType":"Parameters","x":' + b"9" * 5000 + b"}",
            BAD,
        ),
        ("nan", "", (fhir,), b'{"resourceType":"Parameters","parameter":NaN}', BAD),
        ("lone-surrogate", "", (fhir,), b'{"resourceType":"Parameters","id":"\\udfff"}', BAD),
        ("not-json", "", (fhir,), b"<Parameters/>", BAD),
        ("not-utf8", "", (fhir,), b'{"resourceType":"\xff"}', BAD),
        ("empty", "", (fhir,), b"", BAD),
        ("top-level-array", "", (fhir,), b"[]", CLIENT_ERROR),
        ("top-level-string", "", (fhir,), b'"Parameters"', CLIENT_ERROR),
        ("unknown-resource", "", (fhir,), b'{"resourceType":"Nope"}', CLIENT_ERROR),
        (
            "parameters-no-image",
            "",
            (fhir,),
            b'{"resourceType":"Parameters","parameter":[]}',
            CLIENT_ERROR,
        ),
        ("bundle-no-image", "", (fhir,), bundle_no_image, CLIENT_ERROR),
        ("bundle-dangling-5000", "", (fhir,), dangling, CLIENT_ERROR),
        ("birth-2199", "", (fhir,), with_patient(birthDate="2199-01-01"), INVALID),
        ("birth-1800", "", (fhir,), with_patient(birthDate="1800"), INVALID),
        ("birth-garbage", "", (fhir,), with_patient(birthDate="yesterday"), CLIENT_ERROR),
        ("gender-robot", "", (fhir,), with_patient(gender="robot"), INVALID),
        ("name-20000", "", (fhir,), with_patient(name=[{"text": "A" * 20_000}]), INVALID),
        ("name-control", "", (fhir,), with_patient(name=[{"family": "Kim\u001b[2J"}]), INVALID),
        ("identifier-65", "", (fhir,), with_patient(identifier=[{"value": "M" * 65}]), INVALID),
        (
            "string-1mb",
            "",
            (fhir,),
            with_patient(name=[{"given": ["g" * 1_000_000]}]),
            CLIENT_ERROR,
        ),
        (
            "data-not-base64",
            "",
            (fhir,),
            parameters(image={"contentType": "image/jpeg", "data": "!!!%%%"}),
            CLIENT_ERROR,
        ),
        (
            "data-not-image",
            "",
            (fhir,),
            parameters(image={"contentType": "image/jpeg", "data": "aGVsbG8="}),
            INVALID,
        ),
        (
            "audio-attachment",
            "",
            (fhir,),
            parameters(image={"contentType": "audio/mpeg", "data": "aGVsbG8="}),
            INVALID,
        ),
        (
            "ssrf-url",
            "",
            (fhir,),
            parameters(image={"contentType": "image/jpeg", "url": "http://169.254.169.254/latest"}),
            INVALID,
        ),
        (
            "file-url",
            "",
            (fhir,),
            parameters(image={"contentType": "image/jpeg", "url": "file:///etc/passwd"}),
            INVALID,
        ),
        (
            "history-5000",
            "",
            (fhir,),
            parameters({"name": "history", "valueString": "h" * 5000}),
            INVALID,
        ),
        ("output-weird", "?output=" + "w" * 500, (fhir,), parameters(), INVALID),
        ("language-weird", "?language=%00", (fhir,), parameters(), INVALID),
        (
            "xml",
            "",
            ((b"Content-Type", b"application/fhir+xml"),),
            b"<Parameters/>",
            frozenset({415}),
        ),
        (
            "fhir-version-3",
            "",
            ((b"Content-Type", b"application/fhir+json; fhirVersion=3.0"),),
            parameters(),
            frozenset({415}),
        ),
        (
            "accept-xml",
            "",
            (fhir, (b"Accept", b"application/fhir+xml")),
            parameters(),
            frozenset({406}),
        ),
        ("prefer-garbage", "", (fhir, (b"Prefer", b"\xff" * 100)), b"{", BAD),
    ]
    for name, query, headers, body, expect in cases:
        yield Probe("fhir", name, "POST", DIAGNOSE + query, headers, body, expect)


def stow_probes() -> Iterator[Probe]:
    b = b"stow-boundary"
    failed = frozenset({409})
    cases: list[tuple[str, str, tuple[tuple[bytes, bytes], ...], bytes, frozenset[int] | None]] = [
        (
            "no-boundary",
            "",
            ((b"Content-Type", b'multipart/related; type="application/dicom"'),),
            stow_body(b, dicom()),
            CLIENT_ERROR,
        ),
        (
            "boundary-200",
            "",
            (stow_type(b"y" * 200),),
            stow_body(b"y" * 200, dicom()),
            CLIENT_ERROR,
        ),
        ("wrong-type", "", ((b"Content-Type", b"text/plain"),), b"x", CLIENT_ERROR),
        ("empty", "", (stow_type(b),), b"", CLIENT_ERROR),
        ("garbage-part", "", (stow_type(b),), stow_body(b, b"\x00" * 500), failed),
        ("truncated-part", "", (stow_type(b),), stow_body(b, dicom()[:300]), failed),
        ("name-20000", "", (stow_type(b),), stow_body(b, dicom(PatientName="A" * 20_000)), failed),
        (
            "name-65-per-group",
            "",
            (stow_type(b),),
            stow_body(b, dicom(PatientName="K^" + "M" * 63)),
            failed,
        ),
        (
            "future-birth",
            "",
            (stow_type(b),),
            stow_body(b, dicom(PatientBirthDate="21990101")),
            failed,
        ),
        ("no-closing-delimiter", "", (stow_type(b),), stow_body(b, dicom())[:-20], ANY),
        ("500-empty-parts", "", (stow_type(b),), stow_body(b, *[b""] * 500), ANY),
        ("study-uid-5000", "/" + "1." * 2500, (stow_type(b),), stow_body(b, b"\x00"), ANY),
    ]
    for name, suffix, headers, body, expect in cases:
        yield Probe("stow", name, "POST", "/dicomweb/studies" + suffix, headers, body, expect)
    part10 = (b"Content-Type", b"application/dicom")
    yield Probe(
        "stow", "part10-as-stow", "POST", "/dicomweb/studies", (part10,), dicom(), CLIENT_ERROR
    )


def path_probes() -> Iterator[Probe]:
    not_found = frozenset({404})
    cases: list[tuple[str, str, str, frozenset[int] | None]] = [
        ("dot-segments", "GET", "/fhir/../etc/passwd", ANY),
        ("encoded-dot-segments", "GET", "/fhir/Binary/..%2f..%2fetc%2fpasswd", CLIENT_ERROR),
        ("report-bad-percent", "GET", "/api/v1/reports/%ff%fe", not_found),
        ("report-nul", "GET", "/api/v1/reports/%00.pdf", not_found),
        ("job-5000-chars", "GET", "/api/v1/jobs/" + "j" * 5000, not_found),
        ("job-events-unknown", "GET", "/api/v1/jobs/nope/events", not_found),
        ("fhir-report-nul", "GET", "/fhir/DiagnosticReport/%00", not_found),
        ("fhir-binary-long", "GET", "/fhir/Binary/" + "b" * 3000, not_found),
        ("fhir-unrouted", "GET", "/fhir/Patient/1", not_found),
        ("fhir-unrouted-deep", "GET", "/fhir/" + "a/" * 500, not_found),
        ("fhir-method", "DELETE", "/fhir/metadata", frozenset({405})),
        ("rest-method", "PUT", "/api/v1/classify", frozenset({405})),
        ("wado-unknown", "GET", "/dicomweb/studies/1/series/2/instances/3", not_found),
        ("unknown-root", "GET", "/%ff%fe%fd", not_found),
        ("schema-page", "GET", "/schema/swagger", not_found),
        ("audit-bad-date", "GET", "/fhir/AuditEvent?date=ge9999-99-99", CLIENT_ERROR),
        ("audit-count-huge", "GET", "/fhir/AuditEvent?_count=" + "9" * 5000, CLIENT_ERROR),
        ("audit-agent-long", "GET", "/fhir/AuditEvent?agent=" + "a" * 5000, ANY),
        ("job-after-huge", "GET", f"/api/v1/jobs/{JOB}/events?after=" + "9" * 5000, BAD),
        ("job-after-negative", "GET", f"/api/v1/jobs/{JOB}/events?after=-1", BAD),
        ("cancel-erase-garbage", "DELETE", f"/api/v1/jobs/{JOB}?erase=perhaps", BAD),
    ]
    for name, method, target, expect in cases:
        yield Probe("path", name, method, target, (), b"", expect)


def header_probes() -> Iterator[Probe]:
    for stream in (f"/api/v1/jobs/{JOB}/events", f"/fhir/jobs/{JOB}/events"):
        for name, value in (
            ("nines-5000", b"9" * 5000),
            ("non-ascii", "é".encode()),
            ("superscript", "²".encode()),
            ("byte-ff", b"\xff"),
            ("negative", b"-1"),
            ("decimal", b"1.5"),
        ):
            yield Probe(
                "header",
                f"last-event-id-{name}",
                "GET",
                stream,
                ((b"Last-Event-ID", value),),
                b"",
                BAD,
            )
    for value in (b"application/fhir+xml", b"text/html;q=abc", b"\xff/\xfe", b"*/" * 2000):
        yield Probe(
            "header", "accept-fhir", "GET", "/fhir/metadata", ((b"Accept", value),), b"", ANY
        )
    yield Probe(
        "header",
        "accept-xml-only",
        "GET",
        "/fhir/metadata",
        ((b"Accept", b"application/fhir+xml"),),
        b"",
        frozenset({406}),
    )
    jpeg_type = (b"Content-Type", b"image/jpeg")
    for value in (b"x" * 5000, b"*;q=abc", b"\xff\xfe", b"ko;q=1e999,vi;q=-1"):
        yield Probe(
            "header",
            "accept-language",
            "POST",
            "/api/v1/classify",
            (jpeg_type, (b"Accept-Language", value)),
            jpeg(),
            ANY,
        )
    for value in (
        b"multipart/form-data; boundary=",
        b'multipart/form-data; boundary="',
        b";;;",
        b"image/jpeg/png",
    ):
        yield Probe(
            "header",
            "content-type",
            "POST",
            "/api/v1/classify",
            ((b"Content-Type", value),),
            jpeg(),
            CLIENT_ERROR,
        )
    for value in (
        b"application/fhir+json; fhirVersion=" + b"4" * 3000,
        b"application/fhir+json; ==",
    ):
        yield Probe(
            "header",
            "content-type-fhir",
            "POST",
            DIAGNOSE,
            ((b"Content-Type", value),),
            parameters(),
            ANY,
        )
    yield Probe(
        "header",
        "origin-null-post",
        "POST",
        "/api/v1/classify",
        (jpeg_type, (b"Origin", b"null")),
        jpeg(),
        ANY,
    )
    yield Probe(
        "header",
        "x-request-id",
        "GET",
        "/health",
        ((b"X-Request-ID", b"\xff" * 64),),
        b"",
        frozenset({200}),
    )


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def authorization_probes() -> Iterator[Probe]:
    """Credential garbage: the answers differ with auth on (401) and off, so ANY status < 500."""
    deep = _b64(b"[" * 5000 + b"]" * 5000)
    header = _b64(b'{"alg":"ES384","typ":"JWT","kid":"x"}')
    values = [
        b"Bearer " + deep + b"." + deep + b".x",
        b"Bearer " + header + b"." + _b64(b'{"iss":' + b"9" * 5000 + b"}") + b".x",
        b"Bearer " + b"A" * 5000,
        b"Bearer \xff\xfe",
        b"Bearer",
        b"Basic " + base64.b64encode(b"admin:admin"),
        b"\xff" * 50,
    ]
    for index, value in enumerate(values):
        yield Probe(
            "auth",
            f"authorization-{index}",
            "GET",
            f"/api/v1/jobs/{JOB}",
            ((b"Authorization", value),),
            b"",
            ANY,
        )
    yield Probe(
        "auth",
        "api-key-garbage",
        "GET",
        "/api/v1/jobs/x",
        ((b"X-API-Key", b"\xff" * 300),),
        b"",
        ANY,
    )
    form = (b"Content-Type", b"application/x-www-form-urlencoded")
    assertion = (
        b"grant_type=client_credentials&client_assertion_type="
        b"urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion="
    )
    for index, value in enumerate(values[:3]):
        yield Probe(
            "auth",
            f"token-assertion-{index}",
            "POST",
            "/auth/token",
            (form,),
            assertion + value.split(b" ", 1)[-1],
            CLIENT_ERROR,
        )
    yield Probe(
        "auth",
        "token-json-body",
        "POST",
        "/auth/token",
        ((b"Content-Type", b"application/json"),),
        b"[" * 10_000,
        CLIENT_ERROR,
    )


def corpus() -> list[Probe]:
    """Every probe, in a fixed order."""
    return [
        *upload_probes(),
        *raw_body_probes(),
        *fhir_probes(),
        *stow_probes(),
        *path_probes(),
        *header_probes(),
        *authorization_probes(),
    ]
