"""DICOMweb (PS3.18) pieces that do not depend on HTTP: the STOW-RS store response."""
