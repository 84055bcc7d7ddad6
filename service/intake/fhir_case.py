"""A parsed FHIR `$diagnose` request → a case: fetch the image, resolve the subject, build.

The FHIR door decodes JSON and negotiates media types; `fhir_mappings.inbound` reduces the
resources to domain values; this module does what needs the FHIR server (an image by URL, a
`Patient/<id>` on the server) and hands everything to the one `build_case`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from fhir_mappings.inbound import DiagnoseInput, SubjectRef, parse_diagnose_request
from fhir_mappings.patient import domain_patient
from service.errors import FhirUnprocessable
from service.fhir_server import FhirServer
from service.images import off_loop
from service.intake.cases import Intake, Limits, build_case, parse_language
from service.intake.limits import check_text_field
from service.pipeline.case import FhirOrigin
from service.pipeline.domain import Patient

MAX_REFERENCE_CHARS = 1024  # a FHIR reference the outputs carry back (subject, image)


async def case_from_fhir(
    body: Any,
    query: Mapping[str, str],
    accept_language: str | None,
    limits: Limits,
    server: FhirServer,
) -> Intake:
    """Parameters or Bundle JSON (already decoded) → the case; 4xx errors name what is wrong."""
    parsed: DiagnoseInput = parse_diagnose_request(body)
    output = query.get("output", parsed.output)
    if output not in ("report", "bundle"):
        raise FhirUnprocessable("output must be 'report' or 'bundle'", expression=["output"])
    language = parse_language(parsed.language or query.get("language"), accept_language, limits)
    references = {"subject": parsed.subject.reference, "image": parsed.image.reference}
    for name, reference in references.items():
        check_text_field(f"{name}.reference", reference, MAX_REFERENCE_CHARS)
    data = parsed.image.data
    if data is None:
        data = await server.fetch_attachment(str(parsed.image.url))
    patient, subject, on_server = await resolve_subject(parsed.patient, parsed.subject, server)
    origin = FhirOrigin(
        output=output,  # type: ignore[arg-type]  # checked above
        subject_reference=subject.reference,
        subject_resource=subject.resource,
        server_patient=on_server,
    )
    return await off_loop(  # decoding is CPU work: never on the event loop
        limits.image,
        build_case,
        data,
        "application/octet-stream",
        patient=patient,
        history=parsed.history,
        language=language,
        origin=origin,
        limits=limits,
        fhir_reference=parsed.image.reference,
    )


async def resolve_subject(
    patient: Patient, subject: SubjectRef, server: FhirServer
) -> tuple[Patient, SubjectRef, str | None]:
    """A bare `Patient/<id>` reference on the configured FHIR server → its Patient resource.

    Returns (patient, subject, the resolved `Patient/<id>` or None). Inline subjects, `urn:`
    references and references to other servers are left as they are.
    """
    relative = server.patient_on_server(subject.reference)
    if relative is None or subject.resource is not None:
        return patient, subject, None
    resource = await server.read_patient(relative)
    mapped = domain_patient(resource, "subject")
    if mapped.name is None and patient.name:
        mapped = dataclasses.replace(mapped, name=patient.name)
    return mapped, SubjectRef(subject.reference, resource), relative
