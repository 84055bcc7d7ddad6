"""Decompression bombs are refused from their headers, with a clean 4xx, without the memory.

Memory is measured in a fresh subprocess (its peak RSS before and after each bomb), so
earlier tests' peaks cannot hide a regression. Each bomb here would cost 0.3-0.6 GB unguarded.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from service.dicom.decode import decode_dicom
from service.errors import DicomMismatch, ImageTooLarge, InvalidDicom
from service.images import ImageLimits, decode_image
from tests import dicom_factory as factory
from tests.support.bombs import deflate_bomb, deflated_dicom, png_bomb, rle_bomb

BIG = ImageLimits(max_pixels=100_000_000)  # so the size limit alone does not stop the bombs

_MEASURE = """
import json, resource, sys
from service.dicom.decode import decode_dicom
from service.errors import ServiceError
from service.images import ImageLimits, decode_image
from tests.support.bombs import deflate_bomb, png_bomb, rle_bomb

limits = ImageLimits(max_pixels=100_000_000)
bombs = {
    "png": (decode_image, png_bomb(9000, 9000)),
    "deflate-header": (decode_dicom, deflate_bomb(600 << 20, where="header")),
    "deflate-pixels": (decode_dicom, deflate_bomb(600 << 20, where="pixels")),
    "deflate-declared": (decode_dicom, deflate_bomb(9000 * 9000 * 3, where="pixels", side=9000)),
    "rle": (decode_dicom, rle_bomb(2 << 20)),
}
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {}
for name, (decode, data) in bombs.items():
    before = peak()
    try:
        decode(data, limits)
        out[name] = ["accepted", 0]
    except ServiceError as error:
        out[name] = [f"{error.status} {error.code}", peak() - before]
print(json.dumps(out))
"""


def test_bombs_are_refused_without_allocating() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE], capture_output=True, text=True, timeout=300, check=True
    )
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(measured) == {"png", "deflate-header", "deflate-pixels", "deflate-declared", "rle"}
    for name, (outcome, grown_mb) in measured.items():
        expected = "422 dicom-mismatch" if name == "rle" else "413 image-too-large"
        assert outcome == expected, name
        assert grown_mb < 300, f"{name}: peak RSS grew {grown_mb:.0f} MB"


def test_png_bomb_detail_names_the_ratio() -> None:
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(png_bomb(6000, 6000), BIG)
    assert "decompression bomb" in caught.value.detail
    assert caught.value.problem()["status"] == 413


def test_ordinary_images_and_flat_small_ones_still_decode() -> None:
    flat = io.BytesIO()
    Image.new("RGB", (2000, 1500), (180, 120, 100)).save(flat, format="PNG")  # ratio ~1000:1
    assert decode_image(flat.getvalue()).width == 2000  # under the bomb floor: accepted
    noisy = np.random.default_rng(1).integers(0, 255, (3000, 2400, 3), dtype=np.uint8)
    photo = io.BytesIO()
    Image.fromarray(noisy, "RGB").save(photo, format="JPEG", quality=90)
    assert decode_image(photo.getvalue()).width == 2400  # 21.6 MB decoded from ~4 MB


def test_a_deflated_instance_is_accepted_and_decodes_like_the_uncompressed_one() -> None:
    image = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    deflated = decode_dicom(deflated_dicom(image))
    plain = decode_dicom(factory.vl_photo(image))
    assert deflated.image.rgb.tobytes() == plain.image.rgb.tobytes()
    assert deflated.patient == plain.patient
    assert deflated.source["SOPClassUID"] == factory.VL_PHOTOGRAPHIC


@pytest.mark.parametrize("where", ["header", "pixels"])
def test_deflate_bombs_are_413(where: str) -> None:
    with pytest.raises(ImageTooLarge):
        decode_dicom(deflate_bomb(256 << 20, where=where))  # type: ignore[arg-type]


def test_a_truncated_or_corrupt_deflated_instance_is_422() -> None:
    data = deflated_dicom(Image.new("RGB", (64, 64), (200, 100, 90)))
    for broken in (data[:-40], data[:200] + b"\xff" * 64 + data[264:]):
        with pytest.raises(InvalidDicom):
            decode_dicom(broken)


def test_a_jpeg_frame_larger_than_rows_and_columns_is_refused() -> None:
    image = Image.new("RGB", (400, 300), (200, 120, 110))
    ds = factory.photo_dataset(image, jpeg=True)
    ds.Rows, ds.Columns = 30, 40  # the codestream still says 400 x 300
    with pytest.raises(DicomMismatch, match="400x300"):
        decode_dicom(factory.to_bytes(ds))


def test_a_jpeg_frame_declaring_a_huge_image_in_few_bytes_is_refused() -> None:
    ds = factory.photo_dataset(Image.new("RGB", (64, 64), (200, 120, 110)), jpeg=True)
    ds.Rows, ds.Columns = 6000, 6000
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        decode_dicom(factory.to_bytes(ds))


def test_rle_segments_that_decode_past_rows_and_columns_are_refused() -> None:
    with pytest.raises(DicomMismatch, match="RLE segment"):
        decode_dicom(rle_bomb(64 << 10))
