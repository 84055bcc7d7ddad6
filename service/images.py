"""Decode image bytes safely: format allow-list, pixel limits, EXIF orientation, RGB."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import EmptyBody, ImageTooLarge, ImageTooSmall, InvalidImage

#: Formats the service decodes, by Pillow format name → media type.
ACCEPTED_FORMATS: dict[str, str] = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # multi-picture JPEG (many phones): the first (primary) image is used
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",  # FHIR examples carry inline GIFs; the first frame is used
}
IMAGE_MEDIA_TYPES = frozenset(ACCEPTED_FORMATS.values()) | {"image/jpg"}


@dataclass(frozen=True)
class ImageLimits:
    """Bounds applied before any pixel is decoded."""

    max_pixels: int = 40_000_000
    min_side: int = 32


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image plus what the report and FHIR output need to know of its source."""

    rgb: Image.Image
    media_type: str
    sha256: str
    source: bytes

    @property
    def width(self) -> int:
        return self.rgb.width

    @property
    def height(self) -> int:
        return self.rgb.height


def decode_image(data: bytes, limits: ImageLimits | None = None) -> DecodedImage:
    """Decode JPEG/PNG/WebP bytes into an upright RGB image, or raise a 4xx ServiceError."""
    limits = limits or ImageLimits()
    if not data:
        raise EmptyBody("the request body is empty; send a JPEG, PNG or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            probe = Image.open(io.BytesIO(data))
            fmt = probe.format or ""
            if fmt not in ACCEPTED_FORMATS:
                raise InvalidImage(
                    f"format {fmt or 'unknown'} is not accepted; use JPEG, PNG, WebP or GIF"
                )
            width, height = probe.size
            if width * height > limits.max_pixels:
                raise ImageTooLarge(
                    f"image is {width}x{height} pixels; the limit is {limits.max_pixels} pixels",
                    limit_pixels=limits.max_pixels,
                )
            probe.load()
            upright = ImageOps.exif_transpose(probe)
            rgb = _to_rgb(upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(
            f"image dimensions exceed the limit of {limits.max_pixels} pixels",
            limit_pixels=limits.max_pixels,
        ) from None
    except UnidentifiedImageError:
        raise InvalidImage("the body is not a decodable JPEG, PNG, WebP or GIF image") from None
    except (OSError, SyntaxError, ValueError, EOFError, ImportError) as exc:
        # ImportError: a plug-in opener (e.g. registered by a training library) that needs a
        # codec this process lacks — still the client's undecodable bytes, never a 500.
        raise InvalidImage("the image data is corrupt or truncated") from exc
    check_min_side(rgb, limits)
    return DecodedImage(
        rgb=rgb,
        media_type=ACCEPTED_FORMATS[fmt],
        sha256=hashlib.sha256(data).hexdigest(),
        source=data,
    )


def check_min_side(image: Image.Image, limits: ImageLimits) -> None:
    """Reject images whose shorter side is under the minimum."""
    if min(image.size) < limits.min_side:
        raise ImageTooSmall(
            f"image is {image.width}x{image.height}; "
            f"both sides must be at least {limits.min_side} px",
            min_side=limits.min_side,
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten transparency onto white and convert any mode to RGB."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def load_rgb(path: Path) -> Image.Image:
    """Read an image file as upright RGB (for CLI, training evaluation, benchmarks)."""
    with Image.open(path) as image:
        return _to_rgb(ImageOps.exif_transpose(image))
