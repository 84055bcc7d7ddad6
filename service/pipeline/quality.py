"""Image-quality measurements and their reason codes (numpy + Pillow only).

Everything is measured on a copy whose longer side is `ANALYSIS_SIDE` px, so the numbers do
not depend on the upload's resolution and the checks cost a few milliseconds.

The skin-tone region is a box in full-range YCbCr (JPEG/BT.601) chrominance. Its start is the
classic Chai & Ngan (1999) box, Cb 77-127 and Cr 133-173. Chrominance varies much less with
skin tone than luminance does, so a CbCr box suits light and dark skin better than RGB rules
such as Kovac et al. (2003), which assume bright, light skin. The box is widened so that it
holds all ten swatches of the Monk Skin Tone scale (Monk 2019) with a margin for noise. The
darkest swatch, #292420, is at Cr 130.8, and the lightest, #f6ede4, is at Cb 122.0. The Cr top
is raised to 180 to keep reddened (erythematous) lesions. Pixels must also be warmer than
neutral by a margin that grows with luma (Cr - Cb > 1.5 + 0.02·Y), as chroma scales with
brightness. This keeps grey and off-white out. The margin is 2.2 at the darkest swatch
(warmth 5.7) and 6.3 at the lightest (warmth 11.3).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from service.pipeline.gate_config import QualityThresholds

ANALYSIS_SIDE = 128

#: Stable reason codes, in the order they are reported.
QUALITY_REASONS: tuple[str, ...] = (
    "too_small",
    "too_dark",
    "overexposed",
    "blurred",
    "grayscale",
    "low_detail",
)
NOT_SKIN = "not_skin"
#: Marginally unfamiliar to the model: `inconclusive`, never `rejected` (gate v2).
UNUSUAL_IMAGE = "unusual_image"
#: The conformal prediction set holds more than one class: `inconclusive`.
SEVERAL_CONDITIONS = "several_conditions"
LOW_CONFIDENCE = "low_confidence"
AMBIGUOUS = "ambiguous"

SKIN_CB = (77.0, 130.0)
SKIN_CR = (127.0, 180.0)
SKIN_Y = (20.0, 250.0)
SKIN_WARMTH = (1.5, 0.02)  # Cr - Cb > a + b * Y

Array = npt.NDArray[np.float32]


def analysis_copy(image: Image.Image, side: int = ANALYSIS_SIDE) -> Image.Image:
    """An RGB copy whose longer side is `side` px (upsampled if smaller)."""
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def laplacian_variance(luma: Array) -> float:
    """Variance of the 4-neighbour Laplacian: low means few sharp edges (blur)."""
    if min(luma.shape) < 3:
        return 0.0
    lap = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * luma[1:-1, 1:-1]
    return float(lap.var())


def colourfulness(rgb: Array) -> float:
    """Hasler & Süsstrunk (2003) colourfulness: 0 for grey, ~15 slightly, ~33 moderately."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    spread = np.sqrt(rg.var() + yb.var())
    centre = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return float(spread + 0.3 * centre)


def entropy_bits(luma: Array) -> float:
    """Shannon entropy of the 256-bin luma histogram (0 for a flat image, at most 8)."""
    hist = np.bincount(np.clip(luma, 0, 255).astype(np.uint8).ravel(), minlength=256)
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())


def skin_fraction(ycbcr: Array) -> float:
    """Share of pixels inside the skin-tone region (see the module docstring)."""
    y, cb, cr = ycbcr[..., 0], ycbcr[..., 1], ycbcr[..., 2]
    mask = (
        (y >= SKIN_Y[0])
        & (y <= SKIN_Y[1])
        & (cb >= SKIN_CB[0])
        & (cb <= SKIN_CB[1])
        & (cr >= SKIN_CR[0])
        & (cr <= SKIN_CR[1])
        & (cr - cb > SKIN_WARMTH[0] + SKIN_WARMTH[1] * y)
    )
    return float(mask.mean())


def measure(image: Image.Image) -> dict[str, float]:
    """The numbers behind every quality reason, measured on a downscaled copy."""
    small = analysis_copy(image)
    rgb = np.asarray(small, dtype=np.float32)
    ycbcr = np.asarray(small.convert("YCbCr"), dtype=np.float32)
    luma = ycbcr[..., 0]
    return {
        "width": float(image.width),
        "height": float(image.height),
        "mean_luma": float(luma.mean()),
        "p95_luma": float(np.percentile(luma, 95)),
        "clipped_fraction": float((rgb.min(axis=-1) >= 250).mean()),
        "sharpness": laplacian_variance(luma),
        "colourfulness": colourfulness(rgb),
        "luma_std": float(luma.std()),
        "noise_ratio": laplacian_variance(luma) / max(float(luma.var()), 1.0),
        "entropy": entropy_bits(luma),
        "skin_fraction": skin_fraction(ycbcr),
    }


def quality_reasons(m: dict[str, float], t: QualityThresholds) -> tuple[str, ...]:
    """Reason codes (a subset of QUALITY_REASONS, in that order) for the measurements `m`."""
    failed = {
        "too_small": min(m["width"], m["height"]) < t.min_side,
        "too_dark": m["p95_luma"] < t.min_p95_luma,
        "overexposed": m["mean_luma"] > t.max_mean_luma
        or m["clipped_fraction"] > t.max_clipped_fraction,
        "blurred": m["sharpness"] < t.min_sharpness,
        "grayscale": m["colourfulness"] < t.min_colourfulness,
        "low_detail": m["entropy"] < t.min_entropy or m["luma_std"] < t.min_luma_std,
    }
    return tuple(code for code in QUALITY_REASONS if failed[code])
