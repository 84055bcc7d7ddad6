"""`$diagnose` as a FHIR `Bundle`: find the image entry and its Patient, check references."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir_mappings.attachments import IMAGE_RESOURCE_TYPES, Candidate, candidates, image_source
from fhir_mappings.diagnose_input import DiagnoseInput, SubjectRef
from fhir_mappings.patient import domain_patient
from fhir_mappings.structure import validate_structure
from service.errors import FhirUnprocessable
from service.pipeline.domain import Patient

BUNDLE_TYPES = ("collection", "transaction", "batch", "document")


def from_bundle(body: dict[str, Any], today: dt.date | None) -> DiagnoseInput:
    """A `Bundle` body → DiagnoseInput; validates the image and Patient entries it uses."""
    if body.get("type") not in BUNDLE_TYPES:
        raise FhirUnprocessable(
            f"Bundle.type must be one of {BUNDLE_TYPES}", expression=["Bundle.type"]
        )
    entries = [(i, e) for i, e in enumerate(body.get("entry") or []) if isinstance(e, dict)]
    by_url = {
        e["fullUrl"]: e.get("resource") for _, e in entries if isinstance(e.get("fullUrl"), str)
    }
    found: list[tuple[int, Candidate]] = []
    for index, entry in entries:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") in IMAGE_RESOURCE_TYPES:
            where = f"Bundle.entry[{index}].resource"
            found += [(index, c) for c in candidates(resource, where)]
    chosen = next(((i, c) for i, c in found if c.is_image), found[0] if found else None)
    if chosen is None:
        raise FhirUnprocessable(
            "the Bundle holds no Media, DocumentReference or Binary with an image",
            expression=["Bundle.entry"],
        )
    image_index, candidate = chosen
    image_entry = body["entry"][image_index]
    image_resource = image_entry["resource"]
    validate_structure(image_resource, f"Bundle.entry[{image_index}].resource")
    _check_references(image_resource, by_url, f"Bundle.entry[{image_index}].resource")
    image = image_source(candidate, _entry_reference(image_entry), by_url.get)
    patient_index = _patient_index(body, entries, image_resource, image_index, by_url)
    if patient_index is None:
        subject_ref = (image_resource.get("subject") or {}).get("reference")
        return DiagnoseInput(Patient(), SubjectRef(subject_ref), image)
    entry = body["entry"][patient_index]
    where = f"Bundle.entry[{patient_index}].resource"
    validate_structure(entry["resource"], where)
    _check_references(entry["resource"], by_url, where)
    patient = domain_patient(entry["resource"], where, today)
    return DiagnoseInput(patient, SubjectRef(_entry_reference(entry), entry["resource"]), image)


def _entry_reference(entry: dict[str, Any]) -> str | None:
    resource = entry.get("resource") or {}
    if isinstance(entry.get("fullUrl"), str):
        return str(entry["fullUrl"])
    return f"{resource['resourceType']}/{resource['id']}" if resource.get("id") else None


def _patient_index(
    body: dict[str, Any],
    entries: list[tuple[int, dict[str, Any]]],
    image: dict[str, Any],
    image_index: int,
    by_url: dict[str, Any],
) -> int | None:
    patients = [i for i, e in entries if (e.get("resource") or {}).get("resourceType") == "Patient"]
    wanted = (image.get("subject") or {}).get("reference")
    if isinstance(wanted, str):
        for index in patients:
            entry = body["entry"][index]
            resource_id = entry["resource"].get("id")
            if wanted == entry.get("fullUrl") or (
                resource_id and wanted.endswith(f"Patient/{resource_id}")
            ):
                return index
        return None  # a reference to a Patient outside the Bundle
    if len(patients) > 1:
        raise FhirUnprocessable(
            "the Bundle holds several Patients and the image names none",
            expression=[f"Bundle.entry[{image_index}].resource.subject"],
        )
    return patients[0] if patients else None


def _check_references(node: Any, by_url: dict[str, Any], where: str) -> None:
    """Every `urn:uuid:` reference must resolve inside the Bundle."""
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str) and reference.startswith("urn:") and reference not in by_url:
            raise FhirUnprocessable(
                f"reference {reference} does not resolve inside the Bundle",
                expression=[f"{where}.reference"],
            )
        for key, value in node.items():
            if key != "contained":
                _check_references(value, by_url, f"{where}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            _check_references(item, by_url, f"{where}[{index}]")
