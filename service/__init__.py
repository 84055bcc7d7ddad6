"""skinscreen: FHIR-integrated skin-condition screening service."""

__version__ = "0.1.0"
