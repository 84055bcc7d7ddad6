"""Validation helpers: the official R4 JSON Schema (typed `$ref` per resource) and
pydantic (fhir.resources R4B) error locations as FHIRPath-like expressions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft6Validator
from pydantic import ValidationError

#: Required primitive elements the schema cannot enforce (it accepts `_status` instead).
#: Paths are dotted; a segment ending in `[]` walks every item of a list.
REQUIRED_PRIMITIVES: dict[str, tuple[str, ...]] = {
    "DiagnosticReport": ("status",),
    "Observation": ("status",),
    "Media": ("status",),
    "Provenance": ("recorded",),
    "Binary": ("contentType",),
    "Bundle": ("type",),
    "AuditEvent": ("recorded", "agent[].requestor"),
    "OperationOutcome": ("issue[].severity", "issue[].code"),
    "CapabilityStatement": (
        "status",
        "date",
        "kind",
        "fhirVersion",
        "format",
        "rest[].mode",
        "rest[].resource[].type",
        "rest[].operation[].name",
        "rest[].operation[].definition",
    ),
    "OperationDefinition": (
        "name",
        "status",
        "kind",
        "code",
        "system",
        "type",
        "instance",
        "parameter[].name",
        "parameter[].use",
        "parameter[].min",
        "parameter[].max",
    ),
    "Parameters": ("parameter[].name",),
}


@lru_cache(maxsize=4)
def _load_definitions(schema_path: str) -> dict[str, Any]:
    with open(schema_path, encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema["definitions"]  # type: ignore[no-any-return]


class R4SchemaValidator:
    """Validate resources against HL7's FHIR R4 JSON Schema, one typed `$ref` per resource."""

    def __init__(self, schema_path: Path | str) -> None:
        self._definitions = _load_definitions(str(schema_path))
        self._validators: dict[str, Draft6Validator] = {}

    def _validator(self, resource_type: str) -> Draft6Validator:
        validator = self._validators.get(resource_type)
        if validator is None:
            schema = {"$ref": f"#/definitions/{resource_type}", "definitions": self._definitions}
            validator = self._validators[resource_type] = Draft6Validator(schema)
        return validator

    def validate(self, resource: dict[str, Any]) -> list[str]:
        """Problems found (empty when valid), each prefixed with a FHIRPath-like location."""
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str) or resource_type not in self._definitions:
            return [f"resourceType: unknown resource type {resource_type!r}"]
        problems = self._validate_one(resource, resource_type)
        if resource_type == "Bundle":
            problems += _dangling_urn_references(resource)
            for index, entry in enumerate(resource.get("entry") or []):
                inner = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(inner, dict):
                    prefix = f"Bundle.entry[{index}].resource"
                    problems += [f"{prefix}/{p}" for p in self.validate(inner)]
        return problems

    def _validate_one(self, resource: dict[str, Any], resource_type: str) -> list[str]:
        shallow = dict(resource)
        if resource_type == "Bundle":  # entries are validated one by one, typed
            shallow["entry"] = [
                {k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e
                for e in resource.get("entry") or []
            ] or None
            if shallow["entry"] is None:
                del shallow["entry"]
        problems = [
            f"{resource_type}.{_path(error.absolute_path)}: {error.message[:300]}"
            for error in self._validator(resource_type).iter_errors(shallow)
        ]
        paths = REQUIRED_PRIMITIVES.get(resource_type, ())
        if resource_type == "Bundle" and resource.get("type") in ("batch", "transaction"):
            paths = (*paths, "entry[].request.method", "entry[].request.url")  # bdl-3
        for path in paths:
            problems += [
                f"{resource_type}.{p}: required element missing" for p in _missing(resource, path)
            ]
        problems += _dangling_contained_references(resource, resource_type)
        return problems


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def _missing(node: Any, path: str, where: str = "") -> Iterator[str]:
    head, _, rest = path.partition(".")
    is_list = head.endswith("[]")
    name = head[:-2] if is_list else head
    here = f"{where}.{name}" if where else name
    value = node.get(name) if isinstance(node, dict) else None
    if not rest:
        if value is None or value == "" or value == []:
            yield here
        return
    if is_list:
        for index, item in enumerate(value or []):
            yield from _missing(item, rest, f"{here}[{index}]")
    elif value is not None:
        yield from _missing(value, rest, here)


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str):
            yield reference
        for key, value in node.items():
            if key not in ("contained", "resource"):
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _dangling_urn_references(bundle: dict[str, Any]) -> list[str]:
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
    full_urls = {e.get("fullUrl") for e in entries}
    problems = []
    for index, entry in enumerate(entries):
        for reference in _references(entry.get("resource")):
            if reference.startswith("urn:uuid:") and reference not in full_urls:
                problems.append(f"Bundle.entry[{index}].resource: dangling reference {reference}")
    return problems


def _dangling_contained_references(resource: dict[str, Any], resource_type: str) -> list[str]:
    contained = resource.get("contained") or []
    ids = {c.get("id") for c in contained if isinstance(c, dict)}
    problems = []
    for reference in list(_references(resource)) + [r for c in contained for r in _references(c)]:
        if reference.startswith("#") and len(reference) > 1 and reference[1:] not in ids:
            problems.append(f"{resource_type}: dangling contained reference {reference}")
    return problems


def pydantic_expressions(error: ValidationError, root: str) -> list[tuple[str, str]]:
    """(FHIRPath-like expression, message) for each fhir.resources validation error."""
    out: list[tuple[str, str]] = []
    for item in error.errors():
        expression = root
        for part in item["loc"]:
            if isinstance(part, int):
                expression += f"[{part}]"
            else:
                name = str(part)
                name = "resourceType" if name == "resource_type" else name
                name = "_" + name[: -len("__ext")] if name.endswith("__ext") else name
                expression += f".{name}"
        out.append((expression, str(item["msg"]).splitlines()[0][:200]))
    return out


def optional_validator(schema_path: Path | None) -> R4SchemaValidator | None:
    """A validator for an opt-in runtime self-check, or None when the schema file is absent."""
    if schema_path is None or not Path(schema_path).is_file():
        return None
    return R4SchemaValidator(schema_path)
