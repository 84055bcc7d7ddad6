"""The FHIR R4 (4.0.1) invariants of the resource types this service emits: a curated table.

Each row is (key, severity, context, FHIRPath expression), copied from the `constraint`
definitions of the R4 StructureDefinitions (hl7.org/fhir/R4, CC0). `context` is where the
constraint sits, relative to the resource ("" = the resource itself, `type:X` = every element of
data type X). Two deliberate deviations, both because of what fhirpathpy implements:
- `hasValue()` is read as `exists()` (fhirpathpy lacks it; on FHIR JSON primitives the two agree);
  ele-1, which is only `hasValue()`, is checked in Python (`fhir_mappings.invariants`).
- dom-3 uses `ofType(...)` where 4.0.1 wrote `as(...)` on a collection (the spec's technical
  correction; FHIRPath's `as` wants a singleton, so the literal form cannot be evaluated).
"""

from __future__ import annotations

Rule = tuple[str, str, str, str]

#: DomainResource: every resource type we emit except Bundle, Binary and Parameters.
DOMAIN_RESOURCE: tuple[Rule, ...] = (
    ("dom-2", "error", "", "contained.contained.empty()"),
    (
        "dom-3",
        "error",
        "",
        "contained.where((('#'+id in (%resource.descendants().reference | "
        "%resource.descendants().ofType(canonical) | %resource.descendants().ofType(uri) | "
        "%resource.descendants().ofType(url))) or descendants().where(reference = '#').exists() "
        "or descendants().where(ofType(canonical) = '#').exists() or "
        "descendants().where(ofType(canonical) = '#').exists()).not()).trace('unmatched', id)"
        ".empty()",
    ),
    (
        "dom-4",
        "error",
        "",
        "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()",
    ),
    ("dom-5", "error", "", "contained.meta.security.empty()"),
    ("dom-6", "warning", "", "text.`div`.exists()"),
)

#: Data types, wherever they occur in a resource.
DATA_TYPES: tuple[Rule, ...] = (
    ("ext-1", "error", "type:Extension", "extension.exists() != value.exists()"),
    (
        "ref-1",
        "error",
        "type:Reference",
        "reference.startsWith('#').not() or "
        "(reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))",
    ),
    ("qty-3", "error", "type:Quantity", "code.empty() or system.exists()"),
    ("att-1", "error", "type:Attachment", "data.empty() or contentType.exists()"),
    (
        "per-1",
        "error",
        "type:Period",
        "start.hasValue().not() or end.hasValue().not() or (start <= end)",
    ),
)

_NAME = "name.matches('[A-Z]([A-Za-z0-9_]){0,254}')"

#: Resource-specific invariants. DiagnosticReport, Media, Device, Provenance, Binary and
#: OperationOutcome have none of their own in R4.
BY_TYPE: dict[str, tuple[Rule, ...]] = {
    "Observation": (
        ("obs-3", "error", "referenceRange", "low.exists() or high.exists() or text.exists()"),
        ("obs-6", "error", "", "dataAbsentReason.empty() or value.empty()"),
        (
            "obs-7",
            "error",
            "",
            "value.empty() or component.code.where(coding.intersect(%resource.code.coding)"
            ".exists()).empty()",
        ),
    ),
    "Patient": (
        (
            "pat-1",
            "error",
            "contact",
            "name.exists() or telecom.exists() or address.exists() or organization.exists()",
        ),
    ),
    "Bundle": (
        ("bdl-1", "error", "", "total.empty() or (type = 'searchset') or (type = 'history')"),
        ("bdl-2", "error", "", "entry.search.empty() or (type = 'searchset')"),
        (
            "bdl-3",
            "error",
            "",
            "entry.all(request.exists() = (%resource.type = 'batch' or "
            "%resource.type = 'transaction' or %resource.type = 'history'))",
        ),
        (
            "bdl-4",
            "error",
            "",
            "entry.all(response.exists() = (%resource.type = 'batch-response' or "
            "%resource.type = 'transaction-response' or %resource.type = 'history'))",
        ),
        ("bdl-5", "error", "entry", "resource.exists() or request.exists() or response.exists()"),
        (
            "bdl-7",
            "error",
            "",
            "(type = 'history') or entry.where(fullUrl.exists())"
            ".select(fullUrl&resource.meta.versionId).isDistinct()",
        ),
        ("bdl-8", "error", "entry", "fullUrl.contains('/_history/').not()"),
        (
            "bdl-9",
            "error",
            "",
            "type = 'document' implies (identifier.system.exists() and identifier.value.exists())",
        ),
        ("bdl-10", "error", "", "type = 'document' implies (timestamp.hasValue())"),
        ("bdl-11", "error", "", "type = 'document' implies entry.first().resource.is(Composition)"),
        (
            "bdl-12",
            "error",
            "",
            "type = 'message' implies entry.first().resource.is(MessageHeader)",
        ),
    ),
    "CapabilityStatement": (
        ("cpb-0", "warning", "", _NAME),
        ("cpb-1", "error", "", "rest.exists() or messaging.exists() or document.exists()"),
        (
            "cpb-2",
            "error",
            "",
            "(description.count() + software.count() + implementation.count()) > 0",
        ),
        ("cpb-3", "error", "", "messaging.endpoint.empty() or kind = 'instance'"),
        ("cpb-7", "error", "", "document.select(profile&mode).isDistinct()"),
        ("cpb-9", "error", "rest", "resource.select(type).isDistinct()"),
        ("cpb-12", "error", "rest.resource", "searchParam.select(name).isDistinct()"),
        ("cpb-14", "error", "", "(kind != 'instance') or implementation.exists()"),
        (
            "cpb-15",
            "error",
            "",
            "(kind != 'capability') or (implementation.exists().not() and software.exists())",
        ),
        (
            "cpb-16",
            "error",
            "",
            "(kind!='requirements') or (implementation.exists().not() and software.exists().not())",
        ),
    ),
    "OperationDefinition": (
        ("opd-0", "warning", "", _NAME),
        ("opd-1", "error", "parameter", "type.exists() or part.exists()"),
        ("opd-2", "error", "parameter", "searchType.exists() implies type = 'string'"),
        (
            "opd-3",
            "error",
            "parameter",
            "targetProfile.exists() implies (type = 'Reference' or type = 'canonical')",
        ),
    ),
    "Parameters": (
        (
            "inv-1",
            "error",
            "parameter",
            "(part.exists() and value.empty() and resource.empty()) or "
            "(part.empty() and (value.exists() xor resource.exists()))",
        ),
    ),
    "AuditEvent": (("sev-1", "error", "entity", "name.empty() or query.empty()"),),
    "CodeSystem": (
        ("csd-0", "warning", "", _NAME),
        (
            "csd-1",
            "error",
            "",
            "concept.code.combine($this.descendants().concept.code).isDistinct()",
        ),
    ),
}

#: Resource types that are not DomainResources (no dom-* rules).
NOT_DOMAIN = frozenset({"Bundle", "Binary", "Parameters"})
