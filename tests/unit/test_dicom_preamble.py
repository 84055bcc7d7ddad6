"""zero_preamble: what leaves the service has a zeroed 128-byte preamble, the rest unchanged."""

from __future__ import annotations

import pydicom
from PIL import Image
from pydicom.filebase import DicomBytesIO

from service.dicom.preamble import is_part10, zero_preamble
from tests.dicom_factory import vl_photo, without_preamble


def test_a_polyglot_preamble_is_zeroed_and_the_data_set_is_unchanged() -> None:
    original = vl_photo(Image.new("RGB", (32, 32), (190, 140, 120)))
    polyglot = b"MZ\x90\x00<html><script>alert(1)</script>".ljust(128, b"A") + original[128:]
    zeroed = zero_preamble(polyglot)
    assert zeroed[:128] == bytes(128)
    assert zeroed[128:] == polyglot[128:] and len(zeroed) == len(polyglot)
    assert is_part10(zeroed)
    before = pydicom.dcmread(DicomBytesIO(polyglot))
    after = pydicom.dcmread(DicomBytesIO(zeroed))
    assert after.preamble == bytes(128) and before.preamble != after.preamble
    assert after.SOPInstanceUID == before.SOPInstanceUID
    assert after.PixelData == before.PixelData
    assert zero_preamble(zeroed) == zeroed


def test_bytes_without_a_preamble_are_returned_as_they_are() -> None:
    bare = without_preamble(Image.new("RGB", (32, 32)))
    assert not is_part10(bare)
    for data in (bare, b"", b"x" * 131, b"\xff\xd8\xff\xe0 a JPEG"):
        assert zero_preamble(data) == data
