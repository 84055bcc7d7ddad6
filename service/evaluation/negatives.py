"""Images that are not usable skin photos, for tuning and testing the gate.

Two kinds: the real non-skin DICOM photos in `shared/dicom` (a line drawing, endoscopy,
teeth, a sneaker, a pathology slide), and images generated here from nothing or from a real
skin photo (flat colour, noise, text, blurred, dark, overexposed, grayscale).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from service.dicom.decode import decode_dicom

#: The single-frame non-skin photos in shared/dicom (the multiframe slide is refused at intake).
DICOM_NEGATIVES: tuple[str, ...] = (
    "dicom4ortho__test.dcm",
    "dwv__nema-vl2_j2kr.dcm",
    "fo-dicom__GH195.dcm",
    "fo-dicom__JPEGwithIcon.dcm",
    "fo-dicom__VL5_J2KI.dcm",
)


def dicom_rgb(path: Path) -> Image.Image:
    """A DICOM photo decoded by the service's own DICOM intake, as RGB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GH195: header says RGB, its JPEG stream says YBR
        return decode_dicom(path.read_bytes()).image.rgb


def dicom_negatives(dicom_dir: Path) -> Iterator[tuple[str, Image.Image]]:
    """(name, RGB image) for every non-skin DICOM photo in `dicom_dir`."""
    for name in DICOM_NEGATIVES:
        yield name.removesuffix(".dcm"), dicom_rgb(dicom_dir / name)


def text_on_white(size: tuple[int, int] = (320, 240)) -> Image.Image:
    """Black printed text on a white page."""
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=22)
    for row, line in enumerate(("Referral letter", "Patient seen today", "Rash on forearm")):
        draw.text((12, 20 + 60 * row), line, fill="black", font=font)
    return page


def generated_negatives(skin: Image.Image, seed: int = 0) -> dict[str, Image.Image]:
    """Synthetic negatives; the photo-derived ones start from the real skin photo `skin`."""
    rng = np.random.default_rng(seed)
    skin = skin.convert("RGB")
    pixels = np.asarray(skin, dtype=np.float32)
    blur_radius = max(skin.size) / 30
    return {
        "flat_colour": Image.new("RGB", (320, 240), (205, 160, 130)),
        "uniform_noise": Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)),
        "text_on_white": text_on_white(),
        "blurred_skin": skin.filter(ImageFilter.GaussianBlur(blur_radius)),
        "dark_skin_photo": Image.fromarray((pixels * 0.12).astype(np.uint8)),
        "overexposed_skin": Image.fromarray(np.clip(pixels * 3.0, 0, 255).astype(np.uint8)),
        "grayscale_skin": ImageOps.grayscale(skin).convert("RGB"),
    }
