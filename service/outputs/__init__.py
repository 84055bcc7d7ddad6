"""Output adapters: what a finished report becomes besides the PDF.

- `fhir.FhirOutput`: the FHIR R4 DiagnosticReport (and, for FHIR callers asking
  `output=bundle`, the transaction Bundle); a copy goes into the PDF/A-3 as an associated file;
- `write_back.FhirWriteBack`: POSTs a FHIR-door case's Bundle to the FHIR server when enabled;
- `dicom.DicomOutput`: the DICOM Encapsulated PDF, for every case.

Each implements `service.pipeline.ports.OutputAdapter`; `service.bootstrap` wires them.
"""
