"""Pure FHIR R4 mappings between JSON resources and the domain types (no HTTP here)."""

from fhir_mappings.conformance import capability_statement, operation_definition
from fhir_mappings.inbound import DiagnoseInput, ImageSource, SubjectRef, parse_diagnose_request
from fhir_mappings.outbound import PdfDocument, diagnostic_report, transaction_bundle
from fhir_mappings.outcome import operation_outcome, operation_outcome_from_validation

__all__ = [
    "DiagnoseInput",
    "ImageSource",
    "PdfDocument",
    "SubjectRef",
    "capability_statement",
    "diagnostic_report",
    "operation_definition",
    "operation_outcome",
    "operation_outcome_from_validation",
    "parse_diagnose_request",
    "transaction_bundle",
]
