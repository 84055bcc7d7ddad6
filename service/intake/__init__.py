"""Turning request bodies (images, DICOM, FHIR attachments) into decoded images."""
