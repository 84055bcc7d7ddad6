"""The structured result: a Comprehensive SR (TID 1500 Measurement Report), built with highdicom.

The IHE AI Results pattern: one measurement group (TID 1501) per class, each naming the
algorithm (name, version, model sha256 as a parameter), the finding site (skin) and the source
image; the group of the top class carries the qualitative evaluations. Clinical-safety rules:

- an AI finding that no clinician reviewed is never a diagnosis: the top finding carries
  Certainty of Finding = Suspected (SCT 415684004), or Uncertain (SCT 64957009) when the
  result is inconclusive, and the document is UNVERIFIED, not final;
- the standard SNOMED CT code is used only for the top finding (and only a verified one,
  `fhir_mappings.codes`); every other class carries the project's private code (99SKSCR);
- a rejected image (quality or not skin) asserts no finding at all: the report holds only the
  screening outcome;
- a reviewed report (a later version) keeps the AI content as it was (still a suspicion) and
  adds the clinician's finding as its own evaluation ("Clinician-reviewed finding", the verified
  SNOMED CT code where there is one); only then is the document VERIFIED and final, with the
  reviewer as Verifying Observer.

The probability is the calibrated probability of the classifier (DCM 122157 "Probability",
unit "1"). The triage level (urgent / soon / routine) and the screening outcome are coded in the
private scheme. All codes come from PS3.16 as shipped in pydicom's code dictionary.
"""

from __future__ import annotations

import io
import logging
import warnings
from datetime import datetime

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from fhir_mappings.codes import SNOMED, verified_codes
from service import __version__
from service.dicom.subject import case_uid
from service.pipeline.case import DicomOrigin
from service.pipeline.domain import ModelInfo, Report
from service.pipeline.policy import ranked

#: highdicom narrates every module it copies at INFO (with instance UIDs): not for our logs.
logging.getLogger("highdicom").setLevel(logging.WARNING)

COMPREHENSIVE_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"
DERMOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.7"
SERIES_NUMBER = 9002
PRIVATE = "99SKSCR"
UNIT_ONE = hd.sr.CodedConcept("1", "UCUM", "no units")
SCREENING_OUTCOME = hd.sr.CodedConcept("ai-outcome", PRIVATE, "AI screening outcome")
TRIAGE = hd.sr.CodedConcept("triage-level", PRIVATE, "AI referral triage level")
TRIAGE_LEVELS = ("urgent", "soon", "routine")
REVIEWED = hd.sr.CodedConcept("reviewed-find", PRIVATE, "Clinician-reviewed finding")


def private(value: str, meaning: str) -> hd.sr.CodedConcept:
    """A concept in the project's private coding scheme."""
    return hd.sr.CodedConcept(value[:16], PRIVATE, meaning)


def finding_code(label: str, *, top: bool) -> hd.sr.CodedConcept:
    """The verified SNOMED CT code for the top finding when there is one, else a private code."""
    if top:
        for system, code, display, _source in verified_codes(label):
            if system == SNOMED:
                return hd.sr.CodedConcept(code, "SCT", display)
    return private(label.lower(), label)


def triage_level(report: Report) -> str:
    """The referral level decided once by `pipeline.policy.referral`."""
    return report.referral.level


def structured_report(
    report: Report,
    subject: Dataset,
    source: DicomOrigin | None,
    now: datetime,
    *,
    seed: str | None = None,
    evidence_sop_class: str = "",
    evidence_sop_instance: str = "",
) -> bytes:
    """Part 10 bytes of the Comprehensive SR of `report`, in the study of `subject`.

    Without a DICOM source there is no image to reference; `evidence_*` then name the report's
    Encapsulated PDF (same study), which highdicom needs to read the study from.
    """
    evidence = Dataset()
    evidence.update(subject)
    if source is not None:
        evidence.SeriesInstanceUID = source.series_instance_uid
        evidence.SOPClassUID = source.sop_class_uid
        evidence.SOPInstanceUID = source.sop_instance_uid
    else:
        evidence.SeriesInstanceUID = case_uid(seed, "pdf-series")
        evidence.SOPClassUID, evidence.SOPInstanceUID = evidence_sop_class, evidence_sop_instance
    model = report.classification.model
    content = hd.sr.MeasurementReport(
        observation_context=_observation_context(model, seed),
        procedure_reported=_procedure(source),
        imaging_measurements=_groups(report, source, seed),
    )
    with warnings.catch_warnings():  # a free-text name has one PN component, on purpose
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        sr = _document(evidence, content, seed, report, source is not None)
    _describe(sr, subject, now, report.language)
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _document(
    evidence: Dataset,
    content: hd.sr.MeasurementReport,
    seed: str | None,
    report: Report,
    record: bool,
) -> hd.sr.ComprehensiveSR:
    review = report.review
    return hd.sr.ComprehensiveSR(
        evidence=[evidence],
        content=content[0],
        series_instance_uid=case_uid(seed, "sr-series"),
        series_number=SERIES_NUMBER,
        sop_instance_uid=case_uid(seed, "sr", report.version),
        instance_number=1,
        manufacturer="skinscreen",
        is_complete=True,
        is_final=review is not None,
        is_verified=review is not None,
        record_evidence=record,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        verifying_observer_name=_person(review.reviewer) if review is not None else None,
        verifying_organization="skinscreen clinician review" if review is not None else None,
    )


def _person(name: str) -> str:
    """A reviewer's name as one PN component (its structure is not known)."""
    return "".join(" " if c in "^=\\" or ord(c) < 32 else c for c in name).strip()[:64] + "^"


def _observation_context(model: ModelInfo, seed: str | None) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=case_uid(model.sha256 or model.name, "device"),
        name=model.name[:64],
        manufacturer_name="skinscreen",
        model_name=model.name[:64],
        serial_number=(model.sha256 or "n/a")[:64],
    )
    observer = hd.sr.ObserverContext(codes.DCM.Device, device)
    return hd.sr.ObservationContext(observer_device_context=observer)


def _procedure(source: DicomOrigin | None) -> hd.sr.CodedConcept:
    if source is not None and source.sop_class_uid == DERMOSCOPIC:
        return hd.sr.CodedConcept.from_code(codes.SCT.DermoscopicPhotography)
    return hd.sr.CodedConcept.from_code(codes.SCT.PhotographyOfPatient)


def _groups(
    report: Report, source: DicomOrigin | None, seed: str | None
) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    model = report.classification.model
    algorithm = hd.sr.AlgorithmIdentification(
        name=model.name[:64], version=model.version[:64], parameters=[f"sha256={model.sha256}"]
    )
    images = (
        [hd.sr.SourceImageForMeasurementGroup(source.sop_class_uid, source.sop_instance_uid)]
        if source is not None
        else None
    )
    status = report.gate.status
    outcome = hd.sr.QualitativeEvaluation(SCREENING_OUTCOME, private(status, f"Screening {status}"))
    level = triage_level(report)
    triage = hd.sr.QualitativeEvaluation(TRIAGE, private(level, level.capitalize()))
    reviewed = _reviewed(report)
    if status == "rejected":  # no finding is asserted for an image the gate refused
        evaluations = [outcome, triage, *reviewed]
        return [_group("outcome", seed, algorithm, images, None, None, evaluations)]
    certainty = codes.SCT.Suspected if status == "ok" else codes.SCT.Uncertain
    groups = []
    for index, (label, probability) in enumerate(ranked(report.classification)):
        evaluations = (
            [
                hd.sr.QualitativeEvaluation(codes.DCM.CertaintyOfFinding, certainty),
                outcome,
                triage,
                *reviewed,
            ]
            if index == 0
            else []
        )
        probability_item = hd.sr.Measurement(
            name=codes.DCM.Probability, value=round(float(probability), 6), unit=UNIT_ONE
        )
        groups.append(
            _group(
                label.lower(),
                seed,
                algorithm,
                images,
                finding_code(label, top=index == 0),
                probability_item,
                evaluations,
            )
        )
    return groups


def _reviewed(report: Report) -> list[hd.sr.QualitativeEvaluation]:
    """The clinician's finding of a reviewed report (none before a review)."""
    review = report.review
    if review is None:
        return []
    value = (
        finding_code(review.finding, top=True)
        if review.finding
        else private("not-assessable", "Not assessable")
    )
    return [hd.sr.QualitativeEvaluation(REVIEWED, value)]


def _group(
    name: str,
    seed: str | None,
    algorithm: hd.sr.AlgorithmIdentification,
    images: list[hd.sr.SourceImageForMeasurementGroup] | None,
    finding: hd.sr.CodedConcept | None,
    probability: hd.sr.Measurement | None,
    evaluations: list[hd.sr.QualitativeEvaluation],
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=case_uid(seed, f"track-{name}"), identifier=f"AI {name}"
        ),
        finding_type=finding,
        algorithm_id=algorithm,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Skin)],
        measurements=[probability] if probability is not None else None,
        qualitative_evaluations=evaluations or None,
        source_images=images,
    )


def _describe(sr: Dataset, subject: Dataset, now: datetime, language: str) -> None:
    """What highdicom leaves out: issuer, dates, series description, the private scheme."""
    for keyword in ("IssuerOfPatientID", "PatientAge"):
        if keyword in subject:
            setattr(sr, keyword, subject.get(keyword))
    sr.SeriesDescription = f"AI skin screening result ({language})"
    sr.SoftwareVersions = __version__
    sr.ContentDate, sr.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    scheme = Dataset()
    scheme.CodingSchemeDesignator = PRIVATE
    scheme.CodingSchemeName = "skinscreen AI screening codes"
    scheme.CodingSchemeResponsibleOrganization = "skinscreen"
    sr.CodingSchemeIdentificationSequence = Sequence([scheme])
