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


# ---- wider negatives (gate v2): images that ship inside installed packages, and renderings ----


def _package_photo(package: str, relative: str) -> Image.Image | None:
    """An image file bundled in an installed package (never downloaded), or None."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return Image.open(path).convert("RGB") if path.is_file() else None


def mri_slice() -> Image.Image | None:
    """matplotlib's sample brain MRI slice (256 × 256, 16-bit), windowed to 8-bit grey."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data/sample_data/s1045.ima.gz"
    if not path.is_file():
        return None
    raw = np.frombuffer(gzip.decompress(path.read_bytes()), dtype=np.uint16).reshape(256, 256)
    grey = (255.0 * raw / max(1, int(raw.max()))).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB").resize((320, 320), Image.Resampling.BILINEAR)


def chest_xray_like(seed: int = 1) -> Image.Image:
    """A rendered chest-radiograph look-alike: dark lungs, bright ribs, spine and mediastinum."""
    rng = np.random.default_rng(seed)
    h, w = 320, 288
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    body = np.exp(-(((x - w / 2) / (w * 0.45)) ** 6)) * 170
    lungs = sum(
        np.exp(-(((x - cx) / 55) ** 2 + ((y - 160) / 110) ** 2) * 2) for cx in (w * 0.3, w * 0.7)
    )
    img = body - 110 * lungs
    for k in range(9):  # ribs: bright arcs
        arc = np.abs(y - (70 + 26 * k) - 0.004 * (x - w / 2) ** 2)
        img += 55 * np.exp(-((arc / 4) ** 2)) * (lungs > 0.2)
    img += 90 * np.exp(-(((x - w / 2) / 18) ** 2))  # spine
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert("RGB")


def histology_like(seed: int = 2) -> Image.Image:
    """An H&E-stained section look-alike: pink stroma, purple nuclei, white gaps."""
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", (320, 320), (236, 190, 214))
    draw = ImageDraw.Draw(page)
    for _ in range(60):  # white lumens / fat
        cx, cy, r = (
            int(v) for v in (rng.integers(0, 320), rng.integers(0, 320), rng.integers(6, 22))
        )
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 245, 248))
    for _ in range(900):  # nuclei
        cx, cy, r = (
            int(v) for v in (rng.integers(0, 320), rng.integers(0, 320), rng.integers(2, 5))
        )
        shade = tuple(int(v) for v in np.array([95, 60, 150]) + rng.integers(-20, 20, 3))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=shade)
    return page.filter(ImageFilter.GaussianBlur(0.8))


def screenshot_like() -> Image.Image:
    """An application window: title bar, side menu, buttons, a table of text."""
    page = Image.new("RGB", (400, 300), (245, 246, 248))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=13)
    draw.rectangle((0, 0, 400, 28), fill=(40, 90, 160))
    draw.text((10, 7), "Clinic scheduler - Monday", fill="white", font=font)
    draw.rectangle((0, 28, 90, 300), fill=(225, 230, 238))
    for row, item in enumerate(("Inbox", "Patients", "Calendar", "Reports", "Settings")):
        draw.text((10, 40 + 28 * row), item, fill=(30, 30, 30), font=font)
    for row in range(8):
        y = 44 + 30 * row
        draw.rectangle((100, y, 390, y + 24), outline=(200, 200, 205), fill="white")
        draw.text(
            (108, y + 5),
            f"09:{row * 7:02d}  Follow-up visit  room {row + 2}",
            fill="black",
            font=font,
        )
    draw.rounded_rectangle((300, 270, 390, 294), 6, fill=(60, 150, 80))
    draw.text((318, 275), "Save", fill="white", font=font)
    return page


def document_page() -> Image.Image:
    """A dense printed page (a scanned letter), slightly grey and tilted."""
    page = Image.new("RGB", (300, 400), (250, 248, 240))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=11)
    words = [
        "the",
        "patient",
        "was",
        "seen",
        "in",
        "clinic",
        "today",
        "with",
        "a",
        "history",
        "of",
        "itching",
        "and",
        "dryness",
    ]
    for row in range(30):
        line = " ".join(words[(row + i) % len(words)] for i in range(6))
        draw.text((16, 14 + 12.5 * row), line, fill=(40, 40, 40), font=font)
    return page.rotate(2.0, fillcolor=(250, 248, 240), resample=Image.Resampling.BICUBIC)


def chart_render() -> Image.Image:
    """A bar chart as a report or dashboard would show it."""
    page = Image.new("RGB", (360, 260), "white")
    draw = ImageDraw.Draw(page)
    draw.line((40, 220, 340, 220), fill="black", width=2)
    draw.line((40, 20, 40, 220), fill="black", width=2)
    for i, height in enumerate((120, 60, 170, 90, 140, 40)):
        x = 55 + 47 * i
        draw.rectangle((x, 220 - height, x + 30, 220), fill=(70 + 25 * i, 120, 200 - 20 * i))
    return page


def wider_negatives() -> dict[str, tuple[str, Image.Image]]:
    """name → (kind, image): photos bundled in installed packages and renderings made here."""
    found: dict[str, tuple[str, Image.Image | None]] = {
        "street_scene_people_far": (
            "people from far away",
            _package_photo("ultralytics", "assets/bus.jpg"),
        ),
        "two_people_far": (
            "people from far away",
            _package_photo("ultralytics", "assets/zidane.jpg"),
        ),
        "portrait_photo": (
            "face photo",
            _package_photo("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
        ),
        "gift_box_product": (
            "object",
            _package_photo("matplotlib", "mpl-data/sample_data/Minduka_Present_Blue_Pack.png"),
        ),
        "logo": ("document", _package_photo("matplotlib", "mpl-data/sample_data/logo2.png")),
        "brain_mri": ("radiology", mri_slice()),
        "chest_xray_like": ("radiology", chest_xray_like()),
        "histology_like": ("histology", histology_like()),
        "screenshot": ("screenshot", screenshot_like()),
        "document_page": ("document", document_page()),
        "bar_chart": ("screenshot", chart_render()),
    }
    return {name: (kind, img) for name, (kind, img) in found.items() if img is not None}
