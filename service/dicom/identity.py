"""Patient identity for the report instances from a FHIR Patient: PN, Patient ID, issuer.

A FHIR HumanName becomes the DICOM PN `Family^Given^Middle^Prefix^Suffix` (PS3.5 §6.2.1), never
the display order "Given Family". Names marked with the ISO 21090 EN representation extension
fill the PN component groups: `ABC` alphabetic, `IDE` ideographic, `SYL` phonetic. A name
without it is alphabetic, unless an alphabetic name is also given: then one in Han characters is
ideographic and one in Hangul or kana phonetic (the PS3.5 Annex H and I conventions).
The chosen identifier gives Patient ID, and its `system` the Issuer of Patient ID.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
_GROUPS = ("ABC", "IDE", "SYL")
_NAME_USES = ("official", "usual", None)
_HAN = re.compile(r"[\u3400-\u9fff]")
_PHONETIC = re.compile(r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\uac00-\ud7af]")
_PN_UNSAFE = re.compile(r"[\^=\\\x00-\x1f]")


@dataclass(frozen=True)
class PatientIdentity:
    """PN and identifier values for the Patient module (empty strings when unknown)."""

    name: str = ""
    patient_id: str = ""
    issuer: str = ""


def identity_from_fhir(resource: dict[str, Any]) -> PatientIdentity:
    """The PN, Patient ID and Issuer of Patient ID of a FHIR Patient resource."""
    patient_id, issuer = _identifier(resource.get("identifier"))
    return PatientIdentity(person_name(resource.get("name")), patient_id, issuer)


def person_name(names: Any) -> str:
    """A PN value with up to three component groups from a list of FHIR HumanNames."""
    if not isinstance(names, list):
        return ""
    candidates = [n for n in names if isinstance(n, dict) and _components(n)]
    groups: dict[str, str] = {}
    for use in _NAME_USES:
        for name in candidates:
            if use is not None and name.get("use") != use:
                continue
            group = _representation(name) or _guess(name, candidates)
            groups.setdefault(group, _components(name))
    if not groups:
        return ""
    values = [groups.get(g, "") for g in _GROUPS]
    while values and not values[-1]:
        values.pop()
    return "=".join(values)


def _components(name: dict[str, Any]) -> str:
    """`Family^Given^Middle^Prefix^Suffix` of one HumanName, trailing empties dropped."""
    given = [_clean(g) for g in name.get("given") or [] if isinstance(g, str)]
    parts = [
        _clean(name.get("family")),
        given[0] if given else "",
        " ".join(g for g in given[1:] if g),
        " ".join(_clean(p) for p in name.get("prefix") or [] if isinstance(p, str)),
        " ".join(_clean(s) for s in name.get("suffix") or [] if isinstance(s, str)),
    ]
    if not any(parts) and isinstance(name.get("text"), str):
        parts[0] = _clean(name["text"])  # unstructured: the whole text as the family name
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts)


def _representation(name: dict[str, Any]) -> str | None:
    for extension in name.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == REPRESENTATION:
            code = extension.get("valueCode")
            if code in _GROUPS:
                return str(code)
    return None


def _guess(name: dict[str, Any], names: list[dict[str, Any]]) -> str:
    """Without the extension: Han or Hangul/kana groups only beside an alphabetic name."""
    text = _components(name)
    if not (_HAN.search(text) or _PHONETIC.search(text)):
        return "ABC"
    alphabetic = any(
        not (_HAN.search(_components(n)) or _PHONETIC.search(_components(n))) for n in names
    )
    if not alphabetic:
        return "ABC"
    return "IDE" if _HAN.search(text) else "SYL"


def _identifier(identifiers: Any) -> tuple[str, str]:
    if not isinstance(identifiers, list):
        return "", ""
    usable = [i for i in identifiers if isinstance(i, dict) and isinstance(i.get("value"), str)]
    usable.sort(key=lambda i: {"official": 0, "usual": 1}.get(str(i.get("use", "")), 2))
    for identifier in usable:
        value = _clean(identifier["value"])[:64]
        if value:
            system = identifier.get("system")
            return value, _clean(system)[:64] if isinstance(system, str) else ""
    return "", ""


def _clean(value: Any) -> str:
    """Text safe inside one PN/LO component (no delimiters or control characters)."""
    return _PN_UNSAFE.sub(" ", value).strip() if isinstance(value, str) else ""
