"""STOW-RS pieces: strict multipart/related parsing and the DICOM JSON store response."""

from __future__ import annotations

import pytest
from dicomweb_client.web import DICOMwebClient
from pydicom.dataset import Dataset

from service.dicom.multipart_related import parse_multipart_related
from service.dicom.stow import (
    CANNOT_UNDERSTAND,
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    SOP_CLASS_NOT_SUPPORTED,
    StoreOutcome,
    failure_reason,
    link_header,
    store_response,
    store_status,
)
from service.errors import (
    BadRequest,
    DicomMismatch,
    ImageTooLarge,
    InvalidDicom,
    UnsupportedMediaType,
    UnsupportedSopClass,
    error_from_problem,
)

CT = 'multipart/related; type="application/dicom"; boundary=b0und'
VL = "1.2.840.10008.5.1.4.1.1.77.1.4"


def test_dicomweb_client_encoding_round_trips() -> None:
    bodies = [b"\x00" * 128 + b"DICM first", b"second\r\n--not-the-boundary\r\n", b""]
    content_type = 'multipart/related; type="application/dicom"; boundary="a:b c"'
    message = DICOMwebClient._encode_multipart_message(bodies, content_type)
    parts = parse_multipart_related(content_type, message)
    assert [p.body for p in parts] == bodies
    assert {p.content_type for p in parts} == {"application/dicom"}


def test_preamble_epilogue_padding_and_default_part_type() -> None:
    body = (
        b"preamble to ignore\r\n--b0und \t\r\n\r\nONE\r\n"
        b"--b0und\r\nContent-Type: Application/DICOM\r\nX-Extra: 1\r\n\r\nTWO\r\n"
        b"--b0und--\r\nepilogue\r\n--b0und\r\n\r\nignored"
    )
    parts = parse_multipart_related(
        "Multipart/Related; boundary=b0und; TYPE=application/dicom", body
    )
    assert [p.body for p in parts] == [b"ONE", b"TWO"]
    assert parts[0].content_type == "application/dicom" and parts[0].headers == {}
    assert parts[1].headers["x-extra"] == "1" and parts[1].content_type == "application/dicom"


@pytest.mark.parametrize(
    ("content_type", "body", "error"),
    [
        ('multipart/related; type="application/dicom"', b"--x\r\n\r\nA\r\n--x--", BadRequest),
        ('multipart/related; boundary=x; type="application/dicom+json"', b"", UnsupportedMediaType),
        ("multipart/related; boundary=x", b"--x\r\n\r\nA\r\n--x--", UnsupportedMediaType),
        ('multipart/mixed; boundary=x; type="application/dicom"', b"", UnsupportedMediaType),
        ("application/dicom", b"DICM", UnsupportedMediaType),
        (CT + "; broken", b"", BadRequest),
        (
            'multipart/related; type="application/dicom"; boundary="' + "x" * 71 + '"',
            b"",
            BadRequest,
        ),
        (CT, b"--b0und--\r\n", BadRequest),  # no parts
        (CT, b"no delimiter at all", BadRequest),
        (CT, b"--b0und\r\n\r\ntruncated part", BadRequest),  # no close delimiter
        (
            CT,
            b"--b0und\r\nContent-Type: application/dicom\r\nno blank line\r\n--b0und--",
            BadRequest,
        ),
        (CT, b"--b0undX\r\n\r\nA\r\n--b0und--", BadRequest),  # delimiter not followed by CRLF
        (CT, b"--b0und\r\nContent-Transfer-Encoding: base64\r\n\r\nQQ==\r\n--b0und--", BadRequest),
    ],
)
def test_refusals(content_type: str, body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_multipart_related(content_type, body)


def test_store_response_is_dicom_json_with_both_sequences() -> None:
    url = "https://h/dicomweb/studies/9/series/8/instances/1.2.3.1"
    monitor = {"monitor": "https://h/api/v1/jobs/j1"}
    sr = "1.2.840.10008.5.1.4.1.1.88.11"
    outcomes = [
        StoreOutcome(VL, "1.2.3.1", retrieve_url=url, links=monitor),
        StoreOutcome(sr, "1.2.3.2", failure_reason=SOP_CLASS_NOT_SUPPORTED),
    ]
    body = store_response("9", "https://h/dicomweb/", outcomes)
    ds = Dataset.from_json(body)
    assert ds.RetrieveURL == "https://h/dicomweb/studies/9"
    (stored,) = ds.ReferencedSOPSequence
    assert stored.ReferencedSOPInstanceUID == "1.2.3.1" and stored.ReferencedSOPClassUID == VL
    assert stored.RetrieveURL.endswith("/instances/1.2.3.1")
    (failed,) = ds.FailedSOPSequence
    assert failed.FailureReason == 0x0122 and failed.ReferencedSOPInstanceUID == "1.2.3.2"
    assert store_status(outcomes) == 202
    assert (
        link_header(outcomes)
        == '<https://h/api/v1/jobs/j1>; rel="monitor"; anchor="urn:oid:1.2.3.1"'
    )


def test_all_failed_has_no_retrieve_url_and_is_409() -> None:
    outcomes = [StoreOutcome("", "", failure_reason=CANNOT_UNDERSTAND)]
    body = store_response("9", "https://h/dicomweb", outcomes)
    assert set(body) == {"00081198"} and body["00081198"]["Value"][0]["00081155"] == {"vr": "UI"}
    assert store_status(outcomes) == 409 and link_header(outcomes) is None
    assert store_status([StoreOutcome(VL, "1")]) == 200
    with pytest.raises(ValueError):
        store_status([])


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (UnsupportedSopClass("x"), SOP_CLASS_NOT_SUPPORTED),
        (DicomMismatch("x"), DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
        (InvalidDicom("x"), CANNOT_UNDERSTAND),
        (ImageTooLarge("x"), OUT_OF_RESOURCES),
        (RuntimeError("x"), PROCESSING_FAILURE),
        (
            error_from_problem({"status": 422, "code": "unsupported-sop-class"}),
            SOP_CLASS_NOT_SUPPORTED,
        ),
        (error_from_problem({"status": 500, "code": "internal-error"}), PROCESSING_FAILURE),
    ],
)
def test_failure_reason(error: Exception, reason: int) -> None:
    assert failure_reason(error) == reason
