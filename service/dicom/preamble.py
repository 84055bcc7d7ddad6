"""The 128-byte preamble of a DICOM Part 10 file, zeroed before the file leaves the service.

PS3.10 §7.1 leaves the preamble to the application; it can hold anything, e.g. the header of
another format (a TIFF, a PE executable, an HTML or ZIP polyglot), so a downloaded "DICOM" file
may also open as something else. Zeros are the value PS3.10 recommends when it is unused.
The stored case keeps the original bytes; only what is returned is rewritten.
"""

from __future__ import annotations

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"


def is_part10(data: bytes) -> bool:
    """True for a 128-byte preamble followed by the `DICM` prefix."""
    return data[PREAMBLE_LENGTH : PREAMBLE_LENGTH + len(MAGIC)] == MAGIC


def zero_preamble(data: bytes) -> bytes:
    """`data` with its preamble set to 128 zero bytes; the rest is unchanged.

    Bytes that are not a Part 10 file (no `DICM` at offset 128) have no preamble and are
    returned as they are.
    """
    if not is_part10(data):
        return data
    return bytes(PREAMBLE_LENGTH) + data[PREAMBLE_LENGTH:]
