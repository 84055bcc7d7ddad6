"""Check a compressed DICOM frame's own header before anything decodes it.

Rows and Columns are only what the data set says; the JPEG or JPEG 2000 codestream in Pixel
Data carries its own size, and that is what the decoder allocates. Both must agree (and the
pixel bytes must be able to carry the declared image, see `images.check_bomb`). RLE has no
size of its own, so its runs are counted against one byte plane per segment.
"""

from __future__ import annotations

import io
import itertools
import struct

from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import UID, RLELossless

from service.errors import DicomMismatch, ImageTooLarge, InvalidDicom
from service.images import ImageLimits, check_bomb


def check_compressed_frame(
    ds: Dataset, syntax: UID, rows: int, columns: int, bands: int, limits: ImageLimits
) -> None:
    """Refuse a bomb-like ratio, and a JPEG / JPEG 2000 frame whose size is not Rows x Columns."""
    pixel_data = ds.PixelData
    check_bomb(columns, rows, bands, len(pixel_data), limits)
    try:
        frame = next(generate_frames(pixel_data, number_of_frames=1))
    except (StopIteration, ValueError) as exc:
        raise InvalidDicom(f"the {syntax.name} pixel data cannot be decoded") from exc
    if syntax == RLELossless:
        _check_rle(frame, rows * columns, bands)
        return
    try:
        with Image.open(io.BytesIO(frame)) as probe:
            size = probe.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(
            f"the compressed frame exceeds the limit of {limits.max_pixels} pixels",
            limit_pixels=limits.max_pixels,
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidDicom(f"the {syntax.name} pixel data cannot be decoded") from exc
    if size != (columns, rows):
        raise DicomMismatch(
            f"the compressed frame is {size[0]}x{size[1]} pixels but Rows x Columns is "
            f"{columns}x{rows}"
        )


def _check_rle(frame: bytes, plane: int, bands: int) -> None:
    """Each RLE segment must decode to at most one byte plane (Rows x Columns bytes).

    pydicom decodes a whole segment before comparing its length, and PackBits turns 2 bytes
    into 128, so the runs are counted first; counting stops as soon as a segment overflows.
    """
    if len(frame) < 64:
        raise InvalidDicom("the RLE frame has no segment table")
    count, *offsets = struct.unpack("<16L", frame[:64])
    if not 1 <= count <= 15 or count != bands:
        raise DicomMismatch(f"the RLE frame has {count} segments; the pixel module needs {bands}")
    bounds = [*offsets[:count], len(frame)]
    for start, end in itertools.pairwise(bounds):
        if not 64 <= start <= end <= len(frame) or not _fits(frame, start, end, plane):
            raise DicomMismatch("an RLE segment decodes to more than Rows x Columns bytes")


def _fits(data: bytes, pos: int, end: int, limit: int) -> bool:
    produced = 0
    while pos < end:
        header = data[pos]
        if header > 128:  # replicate the next byte 257 - header times
            produced, pos = produced + 257 - header, pos + 2
        elif header < 128:  # copy the next header + 1 bytes literally
            produced, pos = produced + header + 1, pos + header + 2
        else:  # 128 is a no-op
            pos += 1
        if produced > limit:
            return False
    return True
