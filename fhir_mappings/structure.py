"""FHIR R4B structural validation of inbound resources (fhir.resources), mapped to 400s."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_mappings.validation import pydantic_expressions
from service.errors import InvalidFhir


def validate_structure(resource: dict[str, Any], expression: str) -> None:
    """fhir.resources R4B structural validation, errors mapped to expressions (400)."""
    model = model_class(resource.get("resourceType"), f"{expression}.resourceType")
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


def model_class(resource_type: Any, expression: str) -> Any:
    """The fhir.resources model of `resource_type`; an unknown type raises InvalidFhir (400)."""
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
