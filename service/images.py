"""Decode image bytes safely: format allow-list, pixel limits, EXIF orientation, RGB.

Bombs are refused from the header, before any pixel is decoded: the declared size against the
pixel limit, and the declared decoded size against the bytes that carry it (a 5 KB PNG that
would inflate to 40 MP is a decompression bomb, not a photo). PNG text chunks are capped too.
Decoding is CPU and memory work, so doors run it off the event loop through `off_loop`, in a
small pool sized from settings: at most that many images are decoding at any time.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

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
#: Decoded images smaller than this are never called bombs, whatever their compression ratio
#: (tiny synthetic or flat test images compress extremely well and cost nothing).
BOMB_FLOOR_BYTES = 16 * 1024 * 1024
#: PNG tEXt/zTXt/iTXt: at most this much text per chunk and per image (Pillow: 1 MB / 64 MB).
PngImagePlugin.MAX_TEXT_CHUNK = 256 * 1024
PngImagePlugin.MAX_TEXT_MEMORY = 1024 * 1024

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class ImageLimits:
    """Bounds applied before any pixel is decoded."""

    max_pixels: int = 40_000_000
    min_side: int = 32
    #: Largest decoded-bytes / encoded-bytes ratio accepted above `BOMB_FLOOR_BYTES`.
    #: Photos are ~5-20 (JPEG) or ~1-3 (PNG); a decompression bomb is thousands.
    max_ratio: int = 250
    #: Images decoding at the same time (`off_loop`); the rest wait their turn.
    decode_workers: int = 2


def check_bomb(width: int, height: int, bands: int, encoded: int, limits: ImageLimits) -> None:
    """Refuse a declared size over the pixel limit, or one its encoded bytes cannot carry."""
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} pixels; the limit is {limits.max_pixels} pixels",
            limit_pixels=limits.max_pixels,
        )
    decoded = width * height * max(bands, 1)
    if decoded > BOMB_FLOOR_BYTES and decoded > limits.max_ratio * max(encoded, 1):
        raise ImageTooLarge(
            f"image declares {width}x{height} pixels in only {encoded} bytes "
            f"(a compression ratio over {limits.max_ratio}); refused as a decompression bomb",
            limit_pixels=limits.max_pixels,
        )


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
            check_bomb(width, height, len(probe.getbands()), len(data), limits)
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
    return image if image.mode == "RGB" else image.convert("RGB")  # no copy of a large RGB image


def load_rgb(path: Path) -> Image.Image:
    """Read an image file as upright RGB (for CLI, training evaluation, benchmarks)."""
    with Image.open(path) as image:
        return _to_rgb(ImageOps.exif_transpose(image))


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        if workers not in _pools:
            _pools[workers] = ThreadPoolExecutor(max(workers, 1), thread_name_prefix="decode")
        return _pools[workers]


async def off_loop(
    image_limits: ImageLimits, decode: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run `decode` (any call that decodes an image) in the bounded decode pool, not on the loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        _pool(image_limits.decode_workers), functools.partial(decode, *args, **kwargs)
    )
