"""Encapsulated PDF output: IOD-valid per dciodvfy, PDF recoverable by DCMTK dcm2pdf."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image
from pydicom import dcmread

from service.dicom.decode import DicomImage, decode_dicom
from service.dicom.encapsulated_pdf import ENCAPSULATED_PDF_STORAGE, encapsulated_pdf
from service.pipeline.case import DicomOrigin
from service.pipeline.domain import ModelInfo, Patient
from tests import dicom_factory as factory

MODEL = ModelInfo("skinscreen-yolov8n-cls", "2025.03", "ab" * 32)
NARRATOR = ModelInfo("knowledge", "1.0", "", kind="narrator")
NOW = datetime(2025, 3, 1, 12, 30, 5, tzinfo=timezone(timedelta(hours=9)))
ODD_PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"  # 45 bytes
EVEN_PDF = ODD_PDF + b"\n"


@pytest.fixture(scope="module")
def decoded() -> DicomImage:
    return decode_dicom(factory.vl_photo(Image.new("RGB", (64, 48), (200, 120, 100))))


@pytest.fixture(scope="module")
def source(decoded: DicomImage) -> DicomOrigin:
    """What a DICOM case carries of its source instance (the report copies it)."""
    return decoded.origin()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian dicom3tools / dcmtk)")
    return path


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "report.dcm"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("with_source", [True, False])
def test_dciodvfy_reports_no_errors(tmp_path: Path, source: DicomOrigin, with_source: bool) -> None:
    patient = Patient(
        name="Jane Doe", age=40, sex="female", birth_date="1985-01-02", identifier="P1"
    )
    data = encapsulated_pdf(
        ODD_PDF,
        source if with_source else None,
        patient,
        MODEL,
        NARRATOR,
        "피부 검진 보고서",
        "ko",
        NOW,
    )
    result = subprocess.run(
        [_tool("dciodvfy"), str(_write(tmp_path, data))], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert "EncapsulatedPDF" in output
    assert "Error" not in output, output


@pytest.mark.parametrize("pdf", [ODD_PDF, EVEN_PDF])
def test_dcm2pdf_extracts_our_pdf(tmp_path: Path, pdf: bytes) -> None:
    data = encapsulated_pdf(pdf, None, Patient(), MODEL, NARRATOR, "Skin report", "en", NOW)
    out = tmp_path / "out.pdf"
    subprocess.run(
        [_tool("dcm2pdf"), str(_write(tmp_path, data)), str(out)], check=True, timeout=60
    )
    extracted = out.read_bytes()
    # DCMTK 3.6.7 cuts after the last "%%EOF" line, so our single NUL pad byte is dropped.
    assert extracted == pdf


def test_joins_the_source_study_and_names_the_models(
    decoded: DicomImage, source: DicomOrigin
) -> None:
    data = encapsulated_pdf(ODD_PDF, source, Patient(), MODEL, NARRATOR, "Report", "vi", NOW)
    ds = dcmread(io.BytesIO(data))
    header = decoded.header
    assert ds.SOPClassUID == ENCAPSULATED_PDF_STORAGE == ds.file_meta.MediaStorageSOPClassUID
    assert ds.StudyInstanceUID == header.StudyInstanceUID
    assert ds.SeriesInstanceUID != header.SeriesInstanceUID and ds.Modality == "DOC"
    assert ds.SOPInstanceUID not in (header.SOPInstanceUID, ds.SeriesInstanceUID)
    assert str(ds.PatientName) == "홍^길동" and ds.SpecificCharacterSet == "ISO_IR 192"
    assert ds.PatientID == "KR-20240001" and ds.AccessionNumber == "ACC-1"
    assert ds.SourceInstanceSequence[0].ReferencedSOPInstanceUID == header.SOPInstanceUID
    assert ds.EncapsulatedDocumentLength == len(ODD_PDF)
    assert ds.EncapsulatedDocument == ODD_PDF + b"\x00"
    names = [item.ManufacturerModelName for item in ds.ContributingEquipmentSequence]
    assert names == ["skinscreen-yolov8n-cls", "knowledge"]
    first = ds.ContributingEquipmentSequence[0]
    assert first.DeviceSerialNumber == MODEL.sha256 and first.SoftwareVersions == "2025.03"
    purpose = first.PurposeOfReferenceCodeSequence[0]
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("109102", "DCM")
    assert ds.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    assert ds.BurnedInAnnotation == "YES" and ds.ConversionType == "WSD"


def test_new_study_from_domain_patient_is_ascii_without_charset() -> None:
    patient = Patient(name="Jane Doe", age=7, sex="male", birth_date="2018-01-02", identifier="P9")
    ds = dcmread(
        io.BytesIO(encapsulated_pdf(EVEN_PDF, None, patient, MODEL, NARRATOR, "R", "en", NOW))
    )
    assert "SpecificCharacterSet" not in ds and "SourceInstanceSequence" not in ds
    assert (ds.PatientID, ds.PatientBirthDate, ds.PatientSex, ds.PatientAge) == (
        "P9",
        "20180102",
        "M",
        "007Y",
    )
    assert ds.ContentDate == "20250301" and ds.AcquisitionDateTime == "20250301123005+0900"
