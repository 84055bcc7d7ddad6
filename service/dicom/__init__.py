"""Everything the service knows of DICOM, with no HTTP in it.

- `decode`: a Part 10 photograph → upright RGB, the domain patient and its identifiers;
- `patient`: the Patient module ↔ the domain `Patient` (PN, AS and DA values);
- `encapsulated_pdf`: the report PDF as an Encapsulated PDF instance in the source study;
- `stow`: the STOW-RS (PS3.18) store response; `multipart_related`: its request body parser.
"""
