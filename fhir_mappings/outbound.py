"""Report → FHIR R4: a self-contained DiagnosticReport, or a transaction Bundle.

Status policy — an AI result is a suspicion until a clinician signs it:
- unreviewed (every report as produced): `preliminary`, meta.security AIAST, no
  `conclusionCode`; the suspected condition's standard codes appear only as the value of the
  finding Observation (none for a rejected photo, which has no finding Observation).
- reviewed (`Report.review`, version 2, 3, …): `confirm` → `final` with the AI finding's codes in
  `conclusionCode`; `revise` → `amended` with the clinician's finding's codes; `not_assessable`
  → `final` without `conclusionCode`. meta.security CLINAST_AIRPT (AI Transparency IG), the
  reviewer in `resultsInterpreter` and in the Provenance as verifier (and author of a
  revision), the AI Devices as the other agents.
`cancelled` would hide the report and its PDF from most EHR views, which is not what a
clinician needs.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
import uuid
from dataclasses import replace
from typing import Any

from fhir_mappings import codes
from fhir_mappings import resources as build
from fhir_mappings.inbound import SubjectRef
from fhir_mappings.resources import Json, PdfDocument, instant, verdict
from service.pipeline.domain import ModelInfo, Report

__all__ = ["PdfDocument", "diagnostic_report", "transaction_bundle"]

_SERVER_MEDIA = re.compile(r"(^|/)Media/[A-Za-z0-9\-.]{1,64}$")
_SERVER_BINARY = re.compile(r"(^|/)Binary/[A-Za-z0-9\-.]{1,64}$")


def diagnostic_report(
    report: Report,
    *,
    conclusion: str,
    pdf: PdfDocument,
    subject: SubjectRef | None = None,
    report_id: str | None = None,
    issued: str | dt.datetime | None = None,
) -> Json:
    """A self-contained DiagnosticReport: Observation, Devices, Media (when the source image
    is not a server Media) and a Provenance (target `#`, the report itself) are `contained`."""
    issued_at = instant(issued or report.created_at)
    subject_json = subject.as_reference(local=False) if subject else None
    contained: list[Json] = []
    media_ref = _server_media(report)
    if media_ref is None:
        media_ref = "#image"
        photo = _media(report, subject_json, None)
        if "url" not in photo["content"]:  # the photo stays retrievable: served by this server
            photo["content"]["url"] = f"Binary/{report.case_id}.photo"
        contained.append({"id": "image", **photo})
    contained += [
        {"id": "classifier", **build.device(report.classification.model, "AI skin classifier")},
        {"id": "narrator", **build.device(report.narrator, "Report narrator")},
    ]
    results: list[str] = []
    if verdict(report) != "rejected":
        finding = build.finding_observation(
            report,
            subject=subject_json,
            media=media_ref,
            device_ref="#classifier",
            issued=issued_at,
        )
        # dom-5: a contained resource carries no security label; the report's AIAST covers it.
        finding.pop("meta", None)
        contained.append({"id": "finding", **finding})
        results.append("#finding")
    contained.append(
        {
            "id": "provenance",
            **build.provenance(
                targets=["#"],
                agents=["#classifier", "#narrator"],
                source=media_ref,
                recorded=issued_at,
                review=report.review,
            ),
        }
    )
    resource = _report(report, conclusion, pdf, subject_json, results, media_ref, issued_at)
    resource = {"resourceType": "DiagnosticReport", "contained": contained, **resource}
    if report_id:
        resource = {"resourceType": "DiagnosticReport", "id": report_id, **resource}
    return resource


def transaction_bundle(
    report: Report,
    *,
    conclusion: str,
    pdf: PdfDocument,
    subject: SubjectRef | None = None,
    image: bytes | None = None,
    issued: str | dt.datetime | None = None,
) -> Json:
    """Bundle type `transaction` (POST, urn:uuid fullUrls) with DiagnosticReport, Observation,
    Media, Devices, Provenance and Binary (the PDF). The Patient is referenced when it has a
    server id, else included (conditional create on its identifier when it has one)."""
    issued_at = instant(issued or report.created_at)
    entries: list[Json] = []

    def add(resource: Json, full_url: str | None = None, if_none_exist: str | None = None) -> str:
        full_url = full_url or f"urn:uuid:{uuid.uuid4()}"
        request: Json = {"method": "POST", "url": resource["resourceType"]}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        return full_url

    subject_json = _bundle_subject(subject, add)
    media_ref = _server_media(report) or add(_media(report, subject_json, image))
    classifier = add(*_device(report.classification.model, "AI skin classifier"))
    narrator = add(*_device(report.narrator, "Report narrator"))
    results = []
    if verdict(report) != "rejected":
        finding = build.finding_observation(
            report, subject=subject_json, media=media_ref, device_ref=classifier, issued=issued_at
        )
        results.append(add({**finding, "meta": build.ai_meta()}))
    binary_ref = add(build.binary(pdf))
    # the PDF travels once: presentedForm points at the Binary entry instead of repeating it
    pdf_by_reference = replace(pdf, url=binary_ref)
    report_resource = {
        "resourceType": "DiagnosticReport",
        **_report(
            report, conclusion, pdf_by_reference, subject_json, results, media_ref, issued_at
        ),
    }
    report_ref = add(report_resource)
    add(
        build.provenance(
            targets=[report_ref, *results, binary_ref],
            agents=[classifier, narrator],
            source=media_ref,
            recorded=issued_at,
            review=report.review,
        )
    )
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": issued_at,
        "entry": entries,
    }


def _report(
    report: Report,
    conclusion: str,
    pdf: PdfDocument,
    subject: Json | None,
    results: list[str],
    media_ref: str,
    issued_at: str,
) -> Json:
    review = report.review
    body: Json = {
        "meta": build.report_meta(report, issued_at),
        "language": report.language,
        "identifier": [{"system": f"{codes.PROJECT_SID}/case-id", "value": report.case_id}],
        "status": _status(report),
        "category": [codes.REPORT_CATEGORY],
        "code": codes.REPORT_CODE,
        "subject": subject,
        "effectiveDateTime": instant(report.created_at),
        "issued": issued_at,
        "result": [{"reference": ref} for ref in results] or None,
        "imagingStudy": [study]
        if (study := build.imaging_study_reference(report.source))
        else None,
        "media": [{"comment": "Analysed photograph", "link": {"reference": media_ref}}],
        "resultsInterpreter": [build.reviewer_reference(review)] if review else None,
        "conclusion": conclusion,
        "conclusionCode": [codes.condition_concept(review.finding)]
        if review and review.finding
        else None,
        "presentedForm": [build.pdf_attachment(pdf, issued_at)],
    }
    return {key: value for key, value in body.items() if value is not None}


def _device(model: ModelInfo, kind_text: str) -> tuple[Json, None, str | None]:
    """A Device entry, created only if no Device with the model's sha256 identifier exists
    (conditional create: one pair of Devices per model, not per report)."""
    device = build.device(model, kind_text)
    identifier = (device.get("identifier") or [{}])[0]
    if not identifier.get("value"):
        return device, None, None
    token = f"{identifier['system']}|{identifier['value']}"
    return device, None, "identifier=" + urllib.parse.quote(token, safe=":/|")


def _status(report: Report) -> str:
    """preliminary until reviewed; then final, or amended when the clinician revised it."""
    if report.review is None:
        return "preliminary"
    return "amended" if report.review.decision == "revise" else "final"


def _server_media(report: Report) -> str | None:
    reference = report.source.fhir_reference
    if reference and not reference.startswith("urn:") and _SERVER_MEDIA.search(reference):
        return reference
    return None


def _media(report: Report, subject: Json | None, data: bytes | None) -> Json:
    reference = report.source.fhir_reference
    url = reference if reference and _SERVER_BINARY.search(reference) else None
    return build.media(report.source, subject=subject, url=url, data=data)


def _bundle_subject(subject: SubjectRef | None, add: Any) -> Json | None:
    if subject is None or (subject.reference is None and subject.resource is None):
        return None
    if subject.on_server or subject.resource is None:
        return subject.as_reference()
    patient = {k: v for k, v in subject.resource.items() if k != "id"}
    identifier = next((i for i in patient.get("identifier") or [] if i.get("value")), None)
    condition = None
    if identifier:
        system = identifier.get("system")
        token = f"{system}|{identifier['value']}" if system else str(identifier["value"])
        condition = "identifier=" + urllib.parse.quote(token, safe=":/|")
    full_url = subject.reference if subject.reference else None
    return {"reference": add(patient, full_url, condition)}
