"""Evaluate the R4 invariants (`invariant_table`) of a resource with fhirpathpy.

`check_invariants(resource)` returns `Violation`s for the resource, its contained resources,
the resources of a Bundle's entries and of a Parameters' parameters (recursively). ele-1
(every element has a value or children) is checked in Python. An expression that evaluates to
empty is satisfied (e.g. cpb-0 when there is no name).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhir_mappings.invariant_table import BY_TYPE, DATA_TYPES, DOMAIN_RESOURCE, NOT_DOMAIN, Rule


@dataclass(frozen=True)
class Violation:
    """One failed invariant at a location (FHIRPath-like)."""

    key: str
    severity: str
    where: str
    expression: str

    def __str__(self) -> str:
        return f"{self.where}: {self.key} ({self.severity}) failed: {self.expression[:160]}"


@lru_cache(maxsize=256)
def _compiled(path: str) -> Callable[..., list[Any]]:
    from fhirpathpy import compile as fhirpath_compile
    from fhirpathpy.models import models

    return fhirpath_compile(path, models["r4"])  # type: ignore[no-any-return]


_TRACE = re.compile(r"\.trace\('[a-z]+'(?:, *id)?\)")


def _path_of(rule: Rule) -> str:
    """The FHIRPath to run: true unless the expression is false somewhere in its context
    (an expression that evaluates to empty is satisfied, as validators read it)."""
    _, _, context, expression = rule
    expression = _TRACE.sub("", expression.replace("hasValue()", "exists()"))
    if context.startswith("type:"):
        return f"descendants().ofType({context[5:]}).where(({expression}).not()).empty()"
    if context:
        return f"{context}.where(({expression}).not()).empty()"
    return expression


def _holds(rule: Rule, resource: dict[str, Any], root: dict[str, Any]) -> bool:
    result = _compiled(_path_of(rule))(resource, {"resource": resource, "rootResource": root})
    return result != [False]


def _shallow(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without the resources nested in it (checked on their own)."""
    kind = resource.get("resourceType")
    if kind == "Bundle":
        entries = [
            {**e, "resource": _placeholder(e["resource"])}
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
            else e
            for e in resource.get("entry") or []
        ]
        return {**resource, "entry": entries} if entries else resource
    if kind == "Parameters":
        return {
            **resource,
            "parameter": [_strip_parameter(p) for p in resource.get("parameter") or []],
        }
    return resource


def _placeholder(resource: dict[str, Any]) -> dict[str, Any]:
    """What the container's own rules read of a nested resource: its type and versionId."""
    out: dict[str, Any] = {"resourceType": resource.get("resourceType", "Basic")}
    version = (resource.get("meta") or {}).get("versionId")
    if version:
        out["meta"] = {"versionId": version}
    return out


def _strip_parameter(parameter: Any) -> Any:
    if not isinstance(parameter, dict):
        return parameter
    out = dict(parameter)
    if isinstance(parameter.get("resource"), dict):
        out["resource"] = _placeholder(parameter["resource"])
    if "part" in parameter:
        out["part"] = [_strip_parameter(p) for p in parameter["part"]]
    return out


def _nested(resource: dict[str, Any], where: str) -> Iterator[tuple[dict[str, Any], str]]:
    if resource.get("resourceType") == "Bundle":
        for index, entry in enumerate(resource.get("entry") or []):
            inner = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(inner, dict):
                yield inner, f"{where}.entry[{index}].resource"
    if resource.get("resourceType") == "Parameters":
        yield from _parameter_resources(resource.get("parameter") or [], f"{where}.parameter")


def _parameter_resources(parameters: list[Any], where: str) -> Iterator[tuple[dict[str, Any], str]]:
    for index, parameter in enumerate(parameters):
        if not isinstance(parameter, dict):
            continue
        if isinstance(parameter.get("resource"), dict):
            yield parameter["resource"], f"{where}[{index}].resource"
        yield from _parameter_resources(parameter.get("part") or [], f"{where}[{index}].part")


def _rules(kind: str, *, data_types: bool) -> tuple[Rule, ...]:
    rules = BY_TYPE.get(kind, ())
    if kind not in NOT_DOMAIN:
        rules = DOMAIN_RESOURCE + rules
    return rules + DATA_TYPES if data_types else rules


def check_invariants(resource: dict[str, Any], where: str | None = None) -> list[Violation]:
    """Every failed invariant of `resource` and the resources inside it."""
    kind = str(resource.get("resourceType", ""))
    where = where or kind
    shallow = _shallow(resource)
    found = [
        Violation(rule[0], rule[1], where, rule[3])
        for rule in _rules(kind, data_types=True)
        if not _holds(rule, shallow, shallow)
    ]
    found += [Violation("ele-1", "error", path, "hasValue() or (children().count() > id.count())")
              for path in _empty_elements(shallow, where)]  # fmt: skip
    for index, contained in enumerate(resource.get("contained") or []):
        if isinstance(contained, dict):
            inner_kind = str(contained.get("resourceType", ""))
            here = f"{where}.contained[{index}]"
            found += [
                Violation(rule[0], rule[1], here, rule[3])
                for rule in _rules(inner_kind, data_types=False)
                if not _holds(rule, contained, resource)
            ]
    for inner, here in _nested(resource, where):
        found += check_invariants(inner, here)
    return found


def _empty_elements(node: Any, where: str) -> Iterator[str]:
    """ele-1 on JSON: an element is a non-empty primitive, or an object with more than an id."""
    if isinstance(node, dict):
        if "resourceType" not in node and not (set(node) - {"id"}):
            yield where
        for key, value in node.items():
            yield from _empty_elements(value, f"{where}.{key}")
    elif isinstance(node, list):
        if not node:
            yield where
        for index, item in enumerate(node):
            if item is not None or not where.rpartition(".")[2].startswith("_"):
                yield from _empty_elements(item, f"{where}[{index}]")
    elif node is None or node == "":
        yield where


def errors(resource: dict[str, Any], ignore: frozenset[str] = frozenset()) -> list[str]:
    """The failed error-severity invariants as text (warnings such as dom-6 are left out)."""
    return [
        str(v) for v in check_invariants(resource) if v.severity == "error" and v.key not in ignore
    ]
