"""The DICOM SR of a report: IOD-valid per dciodvfy, TID 1500 content (finding, probability,
certainty, triage, algorithm, source image), the clinical-safety coding rules, and the patient
identity (PN Family^Given, Issuer of Patient ID) of both report instances."""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset

from service.dicom.decode import decode_dicom
from service.outputs.dicom import report_instances
from service.pipeline.case import Case, DicomOrigin, FhirOrigin
from service.pipeline.domain import Patient, Referral, Report, Review, SourceImage
from tests import dicom_factory as factory
from tests.support.factories import MODEL, make_report, probabilities

NOW = datetime(2025, 3, 1, 12, 30, 5, tzinfo=UTC)
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
KIM = {
    "resourceType": "Patient",
    "name": [{"family": "김", "given": ["민준"]}],
    "identifier": [{"system": "urn:oid:1.2.410.100.1", "value": "KR-9001"}],
    "gender": "male",
    "birthDate": "1990-05-04",
}


@pytest.fixture(scope="module")
def origin() -> DicomOrigin:
    return decode_dicom(factory.vl_photo(Image.new("RGB", (64, 48), (200, 120, 100)))).origin()


def case_of(origin: object, patient: Patient = Patient(name="Test")) -> Case:
    source = SourceImage("image/jpeg", "cd" * 32, 64, 48)
    return Case("case-123", b"", source, patient, None, "en", origin)  # type: ignore[arg-type]


def report(status: str = "ok", top: str = "Acne", p: float = 0.71, **changes: object) -> Report:
    base = make_report(status, probs=probabilities(top, p))  # type: ignore[arg-type]
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def instances(rep: Report, case: Case) -> tuple[Dataset, Dataset]:
    pdf, sr = report_instances(rep, PDF, case, NOW)
    return dcmread(io.BytesIO(pdf)), dcmread(io.BytesIO(sr))


def items(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence", []):
        yield item
        yield from items(item)


def concept(item: Dataset, attribute: str = "ConceptNameCodeSequence") -> tuple[str, str]:
    code = item[attribute][0]
    return str(code.CodeValue), str(code.CodingSchemeDesignator)


def values(sr: Dataset, name: tuple[str, str]) -> list[tuple[str, str]]:
    return [concept(i, "ConceptCodeSequence") for i in items(sr) if concept(i) == name]


FINDING, CERTAINTY = ("121071", "DCM"), ("111012", "DCM")


@pytest.mark.parametrize("with_source", [True, False], ids=["dicom-source", "upload"])
@pytest.mark.parametrize("status", ["ok", "inconclusive", "rejected"])
def test_dciodvfy_reports_no_errors(
    tmp_path: Path, origin: DicomOrigin, with_source: bool, status: str
) -> None:
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        pytest.skip("dciodvfy is not installed (Debian dicom3tools)")
    case = case_of(origin if with_source else FhirOrigin(subject_resource=KIM))
    pair = report_instances(report(status), PDF, case, NOW)
    for name, data in zip(("pdf", "sr"), pair, strict=True):
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(data)
        run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        output = run.stdout + run.stderr
        assert ("ComprehensiveSR" if name == "sr" else "EncapsulatedPDF") in output
        assert "Error" not in output, output


def test_sr_content_follows_tid_1500(origin: DicomOrigin) -> None:
    pdf, sr = instances(report(referral=Referral("routine", ())), case_of(origin))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and sr.Modality == "SR"
    assert sr.StudyInstanceUID == pdf.StudyInstanceUID == origin.study_instance_uid
    assert sr.SeriesInstanceUID not in (pdf.SeriesInstanceUID, origin.series_instance_uid)
    assert concept(sr) == ("126000", "DCM")  # Imaging Measurement Report
    assert (sr.VerificationFlag, sr.CompletionFlag) == ("UNVERIFIED", "COMPLETE")
    assert sr.PreliminaryFlag == "PRELIMINARY"
    findings = values(sr, FINDING)
    assert findings[0] == ("11381005", "SCT")  # the top finding: SNOMED CT Acne
    assert len(findings) == 6 and all(scheme == "99SKSCR" for _, scheme in findings[1:])
    assert values(sr, CERTAINTY) == [("415684004", "SCT")]  # Suspected, never asserted
    numbers = [i for i in items(sr) if concept(i) == ("122157", "DCM")]
    first = numbers[0].MeasuredValueSequence[0]
    assert float(first.NumericValue) == pytest.approx(0.71)
    assert concept(first, "MeasurementUnitsCodeSequence") == ("1", "UCUM")
    text = {concept(i): str(i.TextValue) for i in items(sr) if i.ValueType == "TEXT"}
    assert text[("111001", "DCM")] == MODEL.name and text[("111003", "DCM")] == MODEL.version
    assert text[("111002", "DCM")] == f"sha256={MODEL.sha256}"
    images = [i for i in items(sr) if i.ValueType == "IMAGE"]
    assert {str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for i in images} == {
        origin.sop_instance_uid
    }
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == origin.sop_instance_uid
    assert values(sr, ("triage-level", "99SKSCR")) == [("routine", "99SKSCR")]
    assert values(sr, ("ai-outcome", "99SKSCR")) == [("ok", "99SKSCR")]


def test_unverified_codes_uncertainty_rejection_and_triage(origin: DicomOrigin) -> None:
    urgent = Referral("urgent", ("malignancy_threshold",))
    _, carcinoma = instances(report(top="Carcinoma", referral=urgent), case_of(origin))
    assert values(carcinoma, FINDING)[0] == ("carcinoma", "99SKSCR")  # no verified SNOMED code
    assert values(carcinoma, ("triage-level", "99SKSCR")) == [("urgent", "99SKSCR")]
    soon = Referral("soon", ("inconclusive",))
    _, unsure = instances(report("inconclusive", referral=soon), case_of(origin))
    assert values(unsure, ("triage-level", "99SKSCR")) == [("soon", "99SKSCR")]
    assert values(unsure, CERTAINTY) == [("64957009", "SCT")]  # Uncertain
    _, rejected = instances(report("rejected"), case_of(origin))
    assert values(rejected, FINDING) == [] and values(rejected, CERTAINTY) == []
    assert values(rejected, ("ai-outcome", "99SKSCR")) == [("rejected", "99SKSCR")]
    assert not [i for i in items(rejected) if concept(i) == ("122157", "DCM")]


def test_uids_derive_from_the_case(origin: DicomOrigin) -> None:
    first = instances(report(), case_of(origin))
    again = instances(report(), case_of(origin))
    assert [d.SOPInstanceUID for d in first] == [d.SOPInstanceUID for d in again]
    other = instances(report(), dataclasses.replace(case_of(origin), case_id="case-456"))
    assert first[1].SOPInstanceUID != other[1].SOPInstanceUID
    review = Review("Dr Kim", "confirm", "Acne", "2025-03-02T09:00:00+00:00", version=2)
    reviewed = instances(report(review=review), case_of(origin))
    for before, after in zip(first, reviewed, strict=True):  # new version, new instance
        assert before.SOPInstanceUID != after.SOPInstanceUID
        assert before.SeriesInstanceUID == after.SeriesInstanceUID


def test_fhir_patient_is_family_caret_given_with_issuer() -> None:
    patient = Patient(name="민준 김", sex="male", birth_date="1990-05-04", identifier="KR-9001")
    pdf, sr = instances(report(patient=patient), case_of(FhirOrigin(subject_resource=KIM), patient))
    for ds in (pdf, sr):
        assert str(ds.PatientName) == "김^민준"
        assert ds.PatientName.family_name == "김" and ds.PatientName.given_name == "민준"
        assert (ds.PatientID, ds.IssuerOfPatientID) == ("KR-9001", "urn:oid:1.2.410.100.1")
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert (ds.PatientBirthDate, ds.PatientSex) == ("19900504", "M")
    assert pdf.StudyInstanceUID == sr.StudyInstanceUID  # one new study for both


def test_ideographic_and_phonetic_groups_reach_the_pn() -> None:
    resource = {
        "resourceType": "Patient",
        "name": [
            {"use": "official", "family": "Kim", "given": ["Minjun"]},
            {"family": "金", "given": ["敏俊"]},
            {
                "family": "김",
                "given": ["민준"],
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation",
                        "valueCode": "SYL",
                    }
                ],
            },
        ],
    }
    _, sr = instances(report(), case_of(FhirOrigin(subject_resource=resource)))
    name = sr.PatientName
    assert str(name) == "Kim^Minjun=金^敏俊=김^민준"
    assert name.ideographic == "金^敏俊" and name.phonetic == "김^민준"
    assert "IssuerOfPatientID" not in sr


def test_a_reviewed_report_adds_the_clinicians_finding_and_is_verified(
    tmp_path: Path, origin: DicomOrigin
) -> None:
    review = Review("Kim Minjun", "revise", "Rosacea", "2025-03-02T09:00:00+00:00", version=2)
    _, sr = instances(report(review=review), case_of(origin))
    assert (sr.VerificationFlag, sr.PreliminaryFlag) == ("VERIFIED", "FINAL")
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "Kim Minjun^"
    assert values(sr, ("reviewed-find", "99SKSCR")) == [("398909004", "SCT")]  # Rosacea
    assert values(sr, CERTAINTY) == [("415684004", "SCT")]  # the AI result stays a suspicion
    assert values(sr, FINDING)[0] == ("11381005", "SCT")
    unsure = Review("Dr Lee", "not_assessable", None, "2025-03-02T09:00:00+00:00", version=2)
    _, not_assessable = instances(report(review=unsure), case_of(origin))
    assert values(not_assessable, ("reviewed-find", "99SKSCR")) == [("not-assessable", "99SKSCR")]
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is not None:
        path = tmp_path / "reviewed.dcm"
        path.write_bytes(report_instances(report(review=review), PDF, case_of(origin), NOW)[1])
        run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        assert "Error" not in run.stdout + run.stderr, run.stderr
