"""Check a compressed DICOM frame's own header before anything decodes it.

Rows and Columns are only what the data set says; the JPEG or JPEG 2000 codestream in Pixel
Data carries its own size, and that is what the decoder allocates. Both must agree (and the
pixel bytes must be able to carry the declared image, see `images.check_bomb`).
"""

from __future__ import annotations

import io

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
    if syntax == RLELossless:
        return  # RLE has no size of its own: pydicom decodes to Rows x Columns
    try:
        frame = next(generate_frames(pixel_data, number_of_frames=1))
        with Image.open(io.BytesIO(frame)) as probe:
            size = probe.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(
            f"the compressed frame exceeds the limit of {limits.max_pixels} pixels",
            limit_pixels=limits.max_pixels,
        ) from None
    except (UnidentifiedImageError, StopIteration, OSError, ValueError, SyntaxError) as exc:
        raise InvalidDicom(f"the {syntax.name} pixel data cannot be decoded") from exc
    if size != (columns, rows):
        raise DicomMismatch(
            f"the compressed frame is {size[0]}x{size[1]} pixels but Rows x Columns is "
            f"{columns}x{rows}"
        )
