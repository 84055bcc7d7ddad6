"""Code systems and codes used on the wire.

Only codes that could be verified are emitted. Every verified code names its source in a
comment. Where no code could be verified, the concept carries text plus a code in the
project's own CodeSystem and is listed in `UNVERIFIED` (the README prints that table).
"""

from __future__ import annotations

from typing import Any

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"  # WHO ICD-10 (not the US ICD-10-CM)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PROJECT = "https://skinscreen.dev/fhir/CodeSystem/skin-condition"
PROJECT_SID = "https://skinscreen.dev/fhir/sid"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
V3_PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"
ISSUE_TYPE = "http://hl7.org/fhir/issue-type"

# HL7 AI Transparency IG: "AI asserted" security label (named by the project design, DESIGN.md §4).
AIAST: dict[str, str] = {
    "system": V3_OBSERVATION_VALUE,
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
# HL7 AI Transparency IG 1.0.0-ballot, CodeSystem AddedProvenanceCS: "CLINAST_AIRPT" Clinician
# Asserted from AI Reported — a clinician reviewed and asserted content an AI system reported
# (https://build.fhir.org/ig/HL7/aitransparency-ig/CodeSystem-AddedProvenanceCS.html).
AI_TRANSPARENCY_PROVENANCE = "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AddedProvenanceCS"
CLINICIAN_REVIEWED_AI: dict[str, str] = {
    "system": AI_TRANSPARENCY_PROVENANCE,
    "code": "CLINAST_AIRPT",
    "display": "Clinician Asserted from AI Reported",
}
# Provenance agent types: FHIR R4 CodeSystem provenance-participant-type (core spec), codes
# "verifier" (a person who verified the correctness of the data) and "author".
PROVENANCE_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
AGENT_VERIFIER: dict[str, str] = {
    "system": PROVENANCE_PARTICIPANT,
    "code": "verifier",
    "display": "Verifier",
}
AGENT_AUTHOR: dict[str, str] = {
    "system": PROVENANCE_PARTICIPANT,
    "code": "author",
    "display": "Author",
}
# "UPDATE" data operation: FHIR R4 core, v3-DataOperation (a review makes a new version).
ACTIVITY_UPDATE: dict[str, str] = {
    "system": V3_DATA_OPERATION,
    "code": "UPDATE",
    "display": "revise",
}
# Observation category "imaging": FHIR R4 CodeSystem observation-category (core spec).
IMAGING_CATEGORY: dict[str, str] = {
    "system": OBSERVATION_CATEGORY,
    "code": "imaging",
    "display": "Imaging",
}
# "image" media type: HL7 CodeSystem media-type, as in the FHIR R4 example Media/example
# (https://hl7.org/fhir/R4/media-example.html).
MEDIA_TYPE_IMAGE: dict[str, str] = {"system": MEDIA_TYPE, "code": "image", "display": "Image"}
# "DEV" participation: HL7 v3-ParticipationType, as in the FHIR R4 example Provenance/example
# (https://hl7.org/fhir/R4/provenance-example.html).
PARTICIPATION_DEVICE: dict[str, str] = {"system": V3_PARTICIPATION_TYPE, "code": "DEV"}
# "CREATE" data operation: FHIR R4 core, v3-DataOperation (Provenance.activity example binding).
ACTIVITY_CREATE: dict[str, str] = {
    "system": V3_DATA_OPERATION,
    "code": "CREATE",
    "display": "create",
}

#: Verified codes per class: (system, code, display, source).
_VERIFIED: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "Acne": (
        # OpenSAFELY "acne" codelist (HDR UK Phenotype Library PH3998): SNOMED CT 11381005 Acne.
        (SNOMED, "11381005", "Acne", "OpenSAFELY codelist / HDR UK PH3998"),
        # WHO ICD-10 2019, chapter XII, L70 Acne: L70.9 Acne, unspecified.
        (ICD10, "L70.9", "Acne, unspecified", "WHO ICD-10 2019 L70"),
    ),
    "Carcinoma": (
        # WHO ICD-10 2019, C44 Other malignant neoplasms of skin: C44.9 ... of skin, unspecified.
        (ICD10, "C44.9", "Malignant neoplasm of skin, unspecified", "WHO ICD-10 2019 C44"),
    ),
    "Eczema": (
        # DICOM PS3.16 CID 4405 "Skin Disorder": SNOMED CT 43116000 Eczema.
        (SNOMED, "43116000", "Eczema", "DICOM PS3.16 CID 4405"),
        # WHO ICD-10 2019, L30 Other dermatitis: L30.9 Dermatitis, unspecified (incl. eczema NOS).
        (ICD10, "L30.9", "Dermatitis, unspecified", "WHO ICD-10 2019 L30"),
    ),
    "Keratosis": (),
    "Milia": (),
    "Rosacea": (
        # DICOM PS3.16 CID 4405 "Skin Disorder": SNOMED CT 398909004 Rosacea.
        (SNOMED, "398909004", "Rosacea", "DICOM PS3.16 CID 4405"),
        # WHO ICD-10 2019, L71 Rosacea: L71.9 Rosacea, unspecified.
        (ICD10, "L71.9", "Rosacea, unspecified", "WHO ICD-10 2019 L71"),
    ),
}

#: What could not be verified offline, and why. Printed by the README.
UNVERIFIED: dict[str, str] = {
    "Carcinoma/SNOMED CT": "no authoritative source at hand for 'malignant neoplasm of skin'; "
    "public code lists disagree on the concept id",
    "Keratosis/SNOMED CT, ICD-10": "the class mixes actinic (L57.0) and seborrhoeic (L82) "
    "keratoses; a code for either would claim a subtype the classifier does not tell apart",
    "Milia/SNOMED CT": "no authoritative source at hand for the milium concept id",
    "Milia/ICD-10": "WHO ICD-10 has no 'milium' label in the tabular list; ICD-10-CM indexes "
    "it under L72.0 Epidermal cyst, which could not be confirmed for WHO ICD-10",
    "DiagnosticReport.code/LOINC": "no LOINC code for an AI skin-photo classification report "
    "could be verified; the project code 'skin-screening-report' is sent with text",
    "DiagnosticReport.category": "no verified diagnostic-service code for dermatology "
    "photography; the project code 'dermatology-ai-screening' is sent with text",
}

_DISPLAY: dict[str, str] = {
    "Acne": "Acne",
    "Carcinoma": "Skin carcinoma (suspected)",
    "Eczema": "Eczema",
    "Keratosis": "Keratosis",
    "Milia": "Milia",
    "Rosacea": "Rosacea",
}


def project_coding(code: str, display: str) -> dict[str, str]:
    """A coding in the project's own CodeSystem."""
    return {"system": PROJECT, "code": code, "display": display}


def condition_concept(label: str) -> dict[str, Any]:
    """CodeableConcept for a classifier class: project code first, then verified codes."""
    if label not in _DISPLAY:
        raise KeyError(f"unknown class {label!r}")
    codings = [project_coding(label.lower(), _DISPLAY[label])]
    codings += [
        {"system": system, "code": code, "display": display}
        for system, code, display, _source in _VERIFIED[label]
    ]
    return {"coding": codings, "text": _DISPLAY[label]}


def verified_codes(label: str) -> tuple[tuple[str, str, str, str], ...]:
    """(system, code, display, source) of every verified code for a class."""
    return _VERIFIED[label]


REPORT_CODE: dict[str, Any] = {
    "coding": [project_coding("skin-screening-report", "AI skin condition screening report")],
    "text": "AI skin condition screening report",
}
REPORT_CATEGORY: dict[str, Any] = {
    "coding": [project_coding("dermatology-ai-screening", "Dermatology AI screening")],
    "text": "Dermatology AI screening",
}
FINDING_CODE_TEXT = "AI-suggested skin condition (calibrated probability)"

#: The finding Observation's code: an AI *suspicion*, never a diagnosis. Its value carries the
#: suspected condition (the only place a standard diagnosis code appears before review).
SUSPECTED_FINDING: dict[str, Any] = {
    "coding": [project_coding("ai-suspected-finding", "AI-suspected skin condition (unconfirmed)")],
    "text": "AI-suspected skin condition (unconfirmed screening result)",
}
#: The triage decision of `pipeline.policy.referral`, as a component of the finding.
REFERRAL_CODE: dict[str, Any] = {
    "coding": [project_coding("triage-referral", "Triage referral level")],
    "text": "Triage referral level",
}
REFERRAL_LEVELS: dict[str, str] = {
    "urgent": "Urgent in-person dermatology assessment",
    "soon": "In-person dermatology assessment within weeks",
    "routine": "Routine care",
}


def probability_code(label: str) -> dict[str, Any]:
    """Component code for the calibrated probability of one class — project codes only, so
    the six-class distribution never puts a diagnosis code (e.g. a cancer code) in a report."""
    if label not in _DISPLAY:
        raise KeyError(f"unknown class {label!r}")
    display = f"AI-estimated probability: {label}"
    return {"coding": [project_coding(f"probability-{label.lower()}", display)], "text": display}


def referral_concept(level: str) -> dict[str, Any]:
    """valueCodeableConcept of the triage component (project codes `referral-<level>`)."""
    display = REFERRAL_LEVELS[level]
    return {"coding": [project_coding(f"referral-{level}", display)], "text": display}


def suspected_concept(label: str) -> dict[str, Any]:
    """The suspected condition: its project code and verified codes, text saying suspected."""
    concept = condition_concept(label)
    return {
        **concept,
        "text": f"Suspected {_DISPLAY[label].removesuffix(' (suspected)')} "
        "(AI screening, unconfirmed)",
    }
