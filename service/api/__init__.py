"""HTTP doors: REST, SSE, FHIR, DICOMweb, health, the web page."""
