"""`$diagnose` as a FHIR `Parameters` resource: subject, image, language, history, output."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir_mappings.attachments import (
    IMAGE_RESOURCE_TYPES,
    Candidate,
    ImageSource,
    candidates,
    image_source,
)
from fhir_mappings.diagnose_input import OUTPUTS, DiagnoseInput, Output, SubjectRef
from fhir_mappings.patient import domain_patient
from service.errors import FhirUnprocessable, UnsupportedLanguage
from service.pipeline.domain import LANGUAGES, Patient

PARAMETERS = ("subject", "image", "language", "history", "output")


def from_parameters(body: dict[str, Any], today: dt.date | None) -> DiagnoseInput:
    """A `Parameters` body (already structurally valid) → DiagnoseInput."""
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
        # an inline resource is not on any server, whatever its id: "Media/<id>" would be a
        # link that resolves nowhere, so the report contains the Media instead (no reference)
        return _pick(candidates(resource, f"{where}.resource"), None, None, f"{where}.resource")
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
