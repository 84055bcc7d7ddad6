"""Builders of single R4 resources (JSON dicts) from domain objects. No ids, no Bundle logic."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from fhir_mappings import codes
from service.pipeline.domain import CLASSES, ModelInfo, Report, Review, SourceImage

Json = dict[str, Any]


@dataclass(frozen=True)
class PdfDocument:
    """The rendered PDF for DiagnosticReport.presentedForm and the Binary."""

    data: bytes
    title: str
    language: str
    #: When set (e.g. "Binary/<id>" or an absolute URL), presentedForm carries it instead of data.
    url: str | None = None


def verdict(report: Report) -> str:
    """ok | inconclusive | rejected: the one verdict (`pipeline.policy.verdict`)."""
    return report.gate.status


def instant(value: str | dt.datetime) -> str:
    """FHIR instant (seconds, explicit offset); naive values are taken as UTC."""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def ai_meta() -> Json:
    """meta with the AIAST security label (HL7 AI Transparency)."""
    return {"security": [dict(codes.AIAST)]}


def report_meta(report: Report, issued: str) -> Json:
    """Version, last update and the AI Transparency label: AIAST while the report is an
    unreviewed AI result, CLINAST_AIRPT once a clinician reviewed it."""
    review = report.review
    label = codes.CLINICIAN_REVIEWED_AI if review else codes.AIAST
    return {
        "versionId": str(report.version),
        "lastUpdated": instant(review.reviewed_at) if review else issued,
        "security": [dict(label)],
    }


def device(model: ModelInfo, kind_text: str) -> Json:
    """Device for a model: name, version, identifier = its sha256."""
    resource: Json = {
        "resourceType": "Device",
        "identifier": [{"system": f"{codes.PROJECT_SID}/model-sha256", "value": model.sha256}],
        "status": "active",
        "deviceName": [{"name": model.name, "type": "model-name"}],
        "type": {"text": kind_text},
        "version": [{"value": model.version}],
    }
    if not model.sha256:
        del resource["identifier"]
    return resource


def finding_observation(
    report: Report, *, subject: Json | None, media: str, device_ref: str, issued: str
) -> Json:
    """The AI's suspected finding: code `ai-suspected-finding`, the suspected condition as the
    value (the one place its standard codes appear), the calibrated probability of every class
    and the triage level as components coded in the project CodeSystem only.

    `preliminary` until a clinician reviews the report, `final` afterwards (the AI result as
    recorded is then verified; what the clinician concluded is in the DiagnosticReport)."""
    probabilities = report.classification.probabilities
    top = report.classification.label
    components = [
        {"code": codes.probability_code(label), "valueQuantity": _percent(probabilities[label])}
        for label in CLASSES
        if label in probabilities
    ]
    components.append(
        {
            "code": codes.REFERRAL_CODE,
            "valueCodeableConcept": codes.referral_concept(report.referral.level),
        }
    )
    observation: Json = {
        "resourceType": "Observation",
        "status": "final" if report.review else "preliminary",
        "category": [{"coding": [dict(codes.IMAGING_CATEGORY)]}],
        "code": codes.SUSPECTED_FINDING,
        "effectiveDateTime": instant(report.created_at),
        "issued": issued,
        "valueCodeableConcept": codes.suspected_concept(top),
        "method": {"text": "AI classification of a clinical photograph (calibrated)"},
        "device": {"reference": device_ref},
        "derivedFrom": [{"reference": media}],
        "component": components,
    }
    if subject:
        observation["subject"] = subject
    return observation


def reviewer_reference(review: Review) -> Json:
    """The reviewing clinician as a logical reference (display, and identifier when given)."""
    reference: Json = {"display": review.reviewer}
    if review.reviewer_id:
        reference["identifier"] = {
            "system": f"{codes.PROJECT_SID}/reviewer",
            "value": review.reviewer_id,
        }
    return reference


def _percent(probability: float) -> Json:
    return {"value": round(100.0 * probability, 2), "unit": "%", "system": codes.UCUM, "code": "%"}


def media(
    source: SourceImage, *, subject: Json | None, url: str | None, data: bytes | None
) -> Json:
    """Media for the analysed photo (content by url or inline data)."""
    content: Json = {"contentType": source.media_type}
    if data is not None:
        content.update(
            data=base64.b64encode(data).decode("ascii"), size=len(data), hash=sha1_base64(data)
        )
    elif url:
        content["url"] = url
    identifiers = [{"system": f"{codes.PROJECT_SID}/image-sha256", "value": source.sha256}]
    if sop_uid := source.dicom.get("SOPInstanceUID"):
        identifiers.append(dicom_uid(sop_uid))
    resource: Json = {
        "resourceType": "Media",
        "identifier": identifiers,
        "status": "completed",
        "type": {"coding": [dict(codes.MEDIA_TYPE_IMAGE)]},
        "width": source.width,
        "height": source.height,
        "content": content,
    }
    if subject:
        resource["subject"] = subject
    return resource


def dicom_uid(uid: str) -> Json:
    """Identifier for a DICOM UID (FHIR R4: system urn:dicom:uid, value urn:oid:<uid>)."""
    return {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}


def imaging_study_reference(source: SourceImage) -> Json | None:
    """Logical reference to the DICOM study the photo came from, when it came as DICOM."""
    study = source.dicom.get("StudyInstanceUID")
    if not study:
        return None
    return {"type": "ImagingStudy", "identifier": dicom_uid(study)}


def sha1_base64(data: bytes) -> str:
    """Attachment.hash: base64 of the SHA-1 digest."""
    return base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def pdf_attachment(pdf: PdfDocument, creation: str) -> Json:
    """presentedForm entry for the PDF."""
    attachment: Json = {
        "contentType": "application/pdf",
        "language": pdf.language,
        "title": pdf.title,
        "size": len(pdf.data),
        "hash": sha1_base64(pdf.data),
        "creation": creation,
    }
    if pdf.url:
        attachment["url"] = pdf.url
    else:
        attachment["data"] = base64.b64encode(pdf.data).decode("ascii")
    return attachment


def binary(pdf: PdfDocument) -> Json:
    """Binary holding the PDF."""
    return {
        "resourceType": "Binary",
        "contentType": "application/pdf",
        "data": base64.b64encode(pdf.data).decode("ascii"),
    }


def provenance(
    *,
    targets: list[str],
    agents: list[str],
    source: str | None,
    recorded: str,
    review: Review | None = None,
) -> Json:
    """Provenance: the Devices created the targets, from the source image; after a review the
    activity is an update recorded when it was signed, the reviewer first (verifier, and author
    of a revision), the AI Devices after."""
    devices = [
        {"type": {"coding": [dict(codes.PARTICIPATION_DEVICE)]}, "who": {"reference": agent}}
        for agent in agents
    ]
    people: list[Json] = []
    if review is not None:
        people.append(
            {"type": {"coding": [dict(codes.AGENT_VERIFIER)]}, "who": reviewer_reference(review)}
        )
        if review.decision == "revise":
            people.append(
                {"type": {"coding": [dict(codes.AGENT_AUTHOR)]}, "who": reviewer_reference(review)}
            )
    resource: Json = {
        "resourceType": "Provenance",
        "target": [{"reference": target} for target in targets],
        "recorded": instant(review.reviewed_at) if review else recorded,
        "activity": {"coding": [dict(codes.ACTIVITY_UPDATE if review else codes.ACTIVITY_CREATE)]},
        "agent": people + devices,
    }
    if source:
        resource["entity"] = [{"role": "source", "what": {"reference": source}}]
    return resource
