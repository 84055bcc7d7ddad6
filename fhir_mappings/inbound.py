"""`$diagnose` request (Parameters or Bundle, FHIR R4 JSON) → DiagnoseInput.

Status policy: not FHIR / structurally invalid / bad base64 → 400 (InvalidFhir); a valid
resource that cannot be used (wrong type, no image, dangling reference, bad code) → 422;
a non-image attachment (e.g. audio/mpeg) → 422 UnsupportedAttachment, not 415, because the
HTTP body itself (application/fhir+json) is supported.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_mappings.attachments import (
    IMAGE_RESOURCE_TYPES,
    Candidate,
    ImageSource,
    candidates,
    image_source,
)
from fhir_mappings.patient import domain_patient
from fhir_mappings.validation import pydantic_expressions
from service.errors import FhirUnprocessable, InvalidFhir, UnsupportedLanguage
from service.pipeline.domain import LANGUAGES, Patient

Output = Literal["report", "bundle"]
OUTPUTS: tuple[str, ...] = ("report", "bundle")
BUNDLE_TYPES = ("collection", "transaction", "batch", "document")
PARAMETERS = ("subject", "image", "language", "history", "output")

__all__ = ["DiagnoseInput", "ImageSource", "SubjectRef", "parse_diagnose_request"]


@dataclass(frozen=True)
class SubjectRef:
    """The patient as FHIR knows it, for DiagnosticReport.subject."""

    #: "Patient/123", an absolute URL, "urn:uuid:…", or None when only inline without id.
    reference: str | None = None
    #: The original Patient resource when the request carried one.
    resource: dict[str, Any] | None = None

    @property
    def on_server(self) -> bool:
        """True when the reference names a server resource (not a Bundle-local urn:uuid)."""
        return bool(self.reference) and not str(self.reference).startswith("urn:")

    def as_reference(self) -> dict[str, Any] | None:
        """FHIR Reference JSON, or None when there is nothing to refer to."""
        return {"reference": self.reference} if self.reference else None


@dataclass(frozen=True)
class DiagnoseInput:
    """Everything `$diagnose` needs, with FHIR reduced to domain types plus references."""

    patient: Patient
    subject: SubjectRef
    image: ImageSource
    language: str | None = None
    history: str | None = None
    output: Output = "report"


def parse_diagnose_request(body: Any, *, today: dt.date | None = None) -> DiagnoseInput:
    """Parse a Parameters or Bundle body; raise a ServiceError with `expression` on failure."""
    if not isinstance(body, dict):
        raise InvalidFhir("the body is not a JSON object (expected a FHIR resource)")
    resource_type = body.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise InvalidFhir(
            "the body is not a FHIR resource: resourceType is missing", expression=["resourceType"]
        )
    if resource_type not in ("Parameters", "Bundle"):
        _model(resource_type, "resourceType")  # unknown type → 400
        raise FhirUnprocessable(
            f"$diagnose takes a Parameters or a Bundle resource, not {resource_type}",
            expression=[resource_type],
        )
    if resource_type == "Parameters":
        validate_structure(body, "Parameters")
        return _from_parameters(body, today)
    return _from_bundle(body, today)


def validate_structure(resource: dict[str, Any], expression: str) -> None:
    """fhir.resources R4B structural validation, errors mapped to expressions (400)."""
    model = _model(resource.get("resourceType"), f"{expression}.resourceType")
    try:
        model.model_validate(resource)
    except ValidationError as error:
        found = pydantic_expressions(error, expression)
        detail = "; ".join(f"{where}: {message}" for where, message in found[:5])
        raise InvalidFhir(
            f"invalid FHIR R4 content: {detail}", expression=[where for where, _ in found]
        ) from None
    except (KeyError, ValueError):  # an unknown nested resourceType
        where = _unknown_type(resource, expression) or expression
        raise InvalidFhir("unknown FHIR resourceType", expression=[where]) from None


def _model(resource_type: Any, expression: str) -> Any:
    try:
        return get_fhir_model_class(str(resource_type))
    except (KeyError, ValueError):
        raise InvalidFhir(
            f"unknown FHIR resourceType {resource_type!r}", expression=[expression]
        ) from None


def _unknown_type(node: Any, where: str) -> str | None:
    if isinstance(node, dict):
        kind = node.get("resourceType")
        if isinstance(kind, str):
            try:
                get_fhir_model_class(kind)
            except (KeyError, ValueError):
                return f"{where}.resourceType"
        for key, value in node.items():
            found = _unknown_type(value, f"{where}.{key}")
            if found:
                return found
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found = _unknown_type(item, f"{where}[{index}]")
            if found:
                return found
    return None


def _from_parameters(body: dict[str, Any], today: dt.date | None) -> DiagnoseInput:
    seen: dict[str, int] = {}
    patient, subject, image = Patient(), SubjectRef(), None
    language = history = None
    output: Output = "report"
    for index, parameter in enumerate(body.get("parameter") or []):
        name, where = parameter.get("name"), f"Parameters.parameter[{index}]"
        if name not in PARAMETERS:
            raise FhirUnprocessable(
                f"unknown parameter {name!r}; expected one of {PARAMETERS}",
                expression=[f"{where}.name"],
            )
        if name in seen:
            raise FhirUnprocessable(f"parameter {name!r} is repeated", expression=[where])
        seen[name] = index
        if name == "subject":
            patient, subject = _subject_parameter(parameter, where, today)
        elif name == "image":
            image = _image_parameter(parameter, where)
        elif name == "language":
            language = _code(parameter, where, LANGUAGES, "valueCode")
        elif name == "history":
            history = _value(parameter, where, "valueString")
        else:
            output = (
                "bundle" if _code(parameter, where, OUTPUTS, "valueCode") == "bundle" else "report"
            )
    if image is None:
        raise FhirUnprocessable(
            "no image: add a parameter 'image' (valueAttachment or a Media, "
            "DocumentReference or Binary resource)",
            expression=["Parameters.parameter"],
        )
    return DiagnoseInput(patient, subject, image, language, history, output)


def _value(parameter: dict[str, Any], where: str, key: str) -> str:
    value = parameter.get(key)
    if not isinstance(value, str):
        raise FhirUnprocessable(
            f"parameter {parameter.get('name')!r} needs {key}", expression=[f"{where}.{key}"]
        )
    return value


def _code(parameter: dict[str, Any], where: str, allowed: tuple[str, ...], key: str) -> str:
    value = _value(parameter, where, key)
    if value not in allowed:
        error = UnsupportedLanguage if parameter.get("name") == "language" else FhirUnprocessable
        raise error(
            f"{parameter.get('name')} must be one of {allowed}", expression=[f"{where}.{key}"]
        )
    return value


def _subject_parameter(
    parameter: dict[str, Any], where: str, today: dt.date | None
) -> tuple[Patient, SubjectRef]:
    resource = parameter.get("resource")
    if isinstance(resource, dict):
        if resource.get("resourceType") != "Patient":
            raise FhirUnprocessable(
                "subject must be a Patient resource", expression=[f"{where}.resource.resourceType"]
            )
        reference = f"Patient/{resource['id']}" if resource.get("id") else None
        patient = domain_patient(resource, f"{where}.resource", today)
        return patient, SubjectRef(reference, resource)
    reference = (parameter.get("valueReference") or {}).get("reference")
    if not isinstance(reference, str) or not reference.split("/")[-2:-1] == ["Patient"]:
        raise FhirUnprocessable(
            "subject needs a Patient resource or a valueReference to Patient",
            expression=[f"{where}.valueReference.reference"],
        )
    display = (parameter.get("valueReference") or {}).get("display")
    return Patient(name=display), SubjectRef(reference)


def _image_parameter(parameter: dict[str, Any], where: str) -> ImageSource:
    if isinstance(parameter.get("valueAttachment"), dict):
        return image_source(
            Candidate(parameter["valueAttachment"], f"{where}.valueAttachment"), None
        )
    resource = parameter.get("resource")
    if isinstance(resource, dict):
        if resource.get("resourceType") not in IMAGE_RESOURCE_TYPES:
            raise FhirUnprocessable(
                f"image must be one of {IMAGE_RESOURCE_TYPES}",
                expression=[f"{where}.resource.resourceType"],
            )
        reference = f"{resource['resourceType']}/{resource['id']}" if resource.get("id") else None
        return _pick(
            candidates(resource, f"{where}.resource"), reference, None, f"{where}.resource"
        )
    reference = (parameter.get("valueReference") or {}).get("reference")
    if isinstance(reference, str) and reference.split("/")[-2:-1] == ["Binary"]:
        return ImageSource(
            "image/*", url=reference, reference=None, expression=f"{where}.valueReference"
        )
    raise FhirUnprocessable(
        "image needs valueAttachment, a Media/DocumentReference/Binary "
        "resource, or a valueReference to a Binary",
        expression=[where],
    )


def _pick(found: list[Candidate], reference: str | None, resolve: Any, where: str) -> ImageSource:
    """The first image/* attachment; a precise error when there is none."""
    for candidate in found:
        if candidate.is_image:
            return image_source(candidate, reference, resolve)
    if found:
        return image_source(found[0], reference, resolve)  # raises the precise reason
    raise FhirUnprocessable("the resource carries no attachment", expression=[where])


def _from_bundle(body: dict[str, Any], today: dt.date | None) -> DiagnoseInput:
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
