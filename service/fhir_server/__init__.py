"""The configured FHIR server: the SSRF guard (`guard`) and the one client (`client`)."""

from service.fhir_server.client import FhirServer, WriteBackResult, new_http_client
from service.fhir_server.guard import allowed_url, server_patient

__all__ = ["FhirServer", "WriteBackResult", "allowed_url", "new_http_client", "server_patient"]
