"""DICOM intake: accepted photographs, colours, patient data, and every refusal path."""

from __future__ import annotations

import io
import logging
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from pydicom import dcmread
from pydicom.data import get_charset_files, get_testdata_file

from service.dicom.decode import decode_dicom
from service.dicom.patient import format_person_name, parse_age
from service.errors import (
    DicomMismatch,
    ImageTooLarge,
    InvalidDicom,
    ServiceError,
    UnsupportedSopClass,
)
from service.images import ImageLimits
from tests import dicom_factory as factory

SHARED_SIZES = {  # file → (width, height) of the decoded image
    "dicom4ortho__test.dcm": (409, 517),
    "dwv__nema-vl2_j2kr.dcm": (756, 486),
    "fo-dicom__GH195.dcm": (795, 445),
    "fo-dicom__JPEGwithIcon.dcm": (600, 600),
    "fo-dicom__VL5_J2KI.dcm": (2670, 3340),
}
#: pydicom's 100x100 colour test images: ten horizontal bands of known colours.
BANDS = [
    (255, 0, 0), (255, 128, 128), (0, 255, 0), (128, 255, 128), (0, 0, 255),
    (128, 128, 255), (0, 0, 0), (64, 64, 64), (192, 192, 192), (255, 255, 255),
]  # fmt: skip


@pytest.fixture(scope="module")
def skin_photo(skin_jpeg: bytes) -> Image.Image:
    return Image.open(io.BytesIO(skin_jpeg)).convert("RGB")


@pytest.mark.parametrize("name", sorted(SHARED_SIZES))
def test_shared_files_decode_to_rgb(shared_dir: Path, name: str) -> None:
    decoded = decode_dicom((shared_dir / "dicom" / name).read_bytes())
    assert decoded.image.rgb.mode == "RGB"
    assert decoded.image.rgb.size == SHARED_SIZES[name]
    assert decoded.image.media_type == "application/dicom"
    assert "PixelData" not in decoded.header and "SOPInstanceUID" in decoded.source


def test_vl_photographic_line_drawing_is_accepted_as_grayscale_rgb(shared_dir: Path) -> None:
    decoded = decode_dicom((shared_dir / "dicom" / "dicom4ortho__test.dcm").read_bytes())
    pixels = np.asarray(decoded.image.rgb, dtype=np.int16)
    assert decoded.source["SOPClassUID"] == factory.VL_PHOTOGRAPHIC
    assert np.array_equal(pixels[..., 0], pixels[..., 1])  # grey: for the quality gate to reject
    assert pixels.max() > pixels.min()


def test_whole_slide_multiframe_is_refused(shared_dir: Path) -> None:
    with pytest.raises(UnsupportedSopClass) as caught:
        decode_dicom((shared_dir / "dicom" / "fo-dicom__multiframe.dcm").read_bytes())
    assert caught.value.status == 422
    assert (
        "VL Whole Slide Microscopy" in caught.value.detail and "140 frames" in caught.value.detail
    )


def test_multiframe_of_an_accepted_class_is_refused() -> None:
    with pytest.raises(DicomMismatch, match="2 frames"):
        decode_dicom(Path(get_testdata_file("SC_rgb_rle_2frame.dcm")).read_bytes())


@pytest.mark.parametrize(
    "name",
    [
        "SC_rgb_jpeg_dcmtk.dcm",  # YBR_FULL JPEG baseline
        "SC_rgb_dcmtk_+eb+cy+np.dcm",  # YBR_FULL_422 JPEG baseline
        "SC_rgb_dcmtk_+eb+cr.dcm",  # RGB JPEG baseline without colour transform
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_gdcm_KY.dcm",  # JPEG 2000
        "SC_rgb_rle.dcm",
        "SC_rgb_rle_16bit.dcm",
    ],
)
def test_pydicom_colour_files_have_the_known_band_colours(name: str) -> None:
    limits = ImageLimits(min_side=8)
    pixels = np.asarray(decode_dicom(Path(get_testdata_file(name)).read_bytes(), limits).image.rgb)
    for band, colour in enumerate(BANDS):
        got = pixels[band * 10 + 5, 50].astype(int)
        assert np.abs(got - colour).max() <= 6, (band, got, colour)


@pytest.mark.parametrize(
    "name", ["SC_rgb_jpeg.dcm", "SC_rgb_jpeg_dcmd.dcm", "SC_rgb_small_odd_big_endian.dcm"]
)
def test_other_transfer_syntaxes_decode(name: str) -> None:
    decoded = decode_dicom(Path(get_testdata_file(name)).read_bytes(), ImageLimits(min_side=1))
    assert decoded.image.rgb.mode == "RGB"


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("SC_rgb_jpeg_gdcm.dcm", InvalidDicom, "JPEG Lossless"),
        ("SC_rgb_jls_lossy_line.dcm", InvalidDicom, "JPEG-LS"),
        ("GDCMJ2K_TextGBR.dcm", InvalidDicom, "cannot be decoded"),
        ("examples_rgb_color.dcm", UnsupportedSopClass, "Ultrasound Image Storage"),
    ],
)
def test_files_needing_plugins_or_other_classes_are_clear_422s(
    name: str, error: type[ServiceError], words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # WeasyPrint sets this at import; with it, Pillow fills broken J2K streams with grey.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
    with pytest.raises(error, match=words) as caught:
        decode_dicom(Path(get_testdata_file(name)).read_bytes())
    assert caught.value.status == 422


@pytest.mark.parametrize("build", [factory.vl_photo, factory.dermoscopic])
def test_factory_jpeg_colours_match_pillow(skin_photo: Image.Image, build: object) -> None:
    data = build(skin_photo, jpeg=True)  # type: ignore[operator]
    ds = dcmread(io.BytesIO(data))
    frame = factory.jpeg_baseline(skin_photo)
    expected = np.asarray(Image.open(io.BytesIO(frame)).convert("RGB"), dtype=np.int16)
    got = np.asarray(decode_dicom(data).image.rgb, dtype=np.int16)
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    assert got.shape == expected.shape
    assert np.abs(got - expected).mean() < 1.5
    assert np.abs(got.mean(axis=(0, 1)) - expected.mean(axis=(0, 1))).max() < 1.0


def test_uncompressed_rgb_is_exact(skin_photo: Image.Image) -> None:
    decoded = decode_dicom(factory.dermoscopic(skin_photo))
    assert np.array_equal(np.asarray(decoded.image.rgb), np.asarray(skin_photo))
    assert decoded.source["SOPClassUID"] == factory.DERMOSCOPIC
    assert decoded.source["Modality"] == "DMS" and decoded.source["AccessionNumber"] == "ACC-1"
    assert decoded.source_image().dicom == decoded.source


def test_korean_patient_utf8(skin_photo: Image.Image) -> None:
    patient = decode_dicom(factory.vl_photo(skin_photo, jpeg=True)).patient
    assert patient.name == "홍길동"
    assert patient.sex == "female" and patient.identifier == "KR-20240001"
    assert patient.birth_date == "1980-02-15" and patient.age == 45  # at StudyDate 2025-03-01


def test_korean_patient_iso2022_ir149() -> None:
    ds = dcmread(get_charset_files("chrI2.dcm")[0])
    assert ds.SpecificCharacterSet == ["", "ISO 2022 IR 149"]
    patient = decode_dicom(
        Path(get_charset_files("chrI2.dcm")[0]).read_bytes(), ImageLimits(min_side=8)
    ).patient
    assert patient.name == "Gildong Hong"  # alphabetic group first
    assert format_person_name(ds.PatientName.ideographic) == "洪吉洞"
    assert format_person_name(ds.PatientName.phonetic) == "홍길동"


def test_age_from_age_string_wins_and_birth_date_falls_back_to_today(
    skin_photo: Image.Image,
) -> None:
    patient = {"PatientName": "Doe^Jane^Q^Dr", "PatientAge": "018M", "PatientBirthDate": "19000101"}
    decoded = decode_dicom(factory.vl_photo(skin_photo, patient=patient))
    assert decoded.patient.age == 1 and decoded.patient.name == "Dr Jane Q Doe"
    ds = factory.photo_dataset(skin_photo, patient={"PatientBirthDate": "20000610"})
    del ds.StudyDate
    later = decode_dicom(factory.to_bytes(ds), today=date(2025, 6, 9)).patient
    assert later.age == 24 and later.sex is None and later.name is None


@pytest.mark.parametrize(
    ("text", "years"),
    [("045Y", 45), ("018M", 1), ("104W", 2), ("400D", 1), ("45Y", None), ("", None)],
)
def test_parse_age(text: str, years: int | None) -> None:
    assert parse_age(text) == years


@pytest.mark.parametrize(
    ("build", "error", "words"),
    [
        (factory.without_preamble, InvalidDicom, "not a DICOM Part 10"),
        (factory.truncated, InvalidDicom, "truncated"),
        (factory.without_pixel_data, DicomMismatch, "no Pixel Data"),
        (factory.wrong_pixel_length, DicomMismatch, "Pixel Data holds"),
    ],
)
def test_bad_instances(
    skin_photo: Image.Image, build: object, error: type[ServiceError], words: str
) -> None:
    with pytest.raises(error, match=words) as caught:
        decode_dicom(build(skin_photo))  # type: ignore[operator]
    assert caught.value.status == 422


def test_text_sr_is_not_a_photographic_image() -> None:
    with pytest.raises(UnsupportedSopClass, match="Basic Text SR Storage is not a photographic"):
        decode_dicom(factory.text_sr())


def test_every_truncation_is_a_4xx(shared_dir: Path) -> None:
    data = (shared_dir / "dicom" / "fo-dicom__JPEGwithIcon.dcm").read_bytes()
    cuts = [*range(0, len(data), 397), *range(len(data) - 12, len(data))]
    for cut in cuts:
        with pytest.raises(ServiceError) as caught:
            decode_dicom(data[:cut])
        assert 400 <= caught.value.status < 500, cut


def test_pixel_limit_applies_before_decoding(shared_dir: Path) -> None:
    data = (shared_dir / "dicom" / "fo-dicom__VL5_J2KI.dcm").read_bytes()
    with pytest.raises(ImageTooLarge):
        decode_dicom(data, ImageLimits(max_pixels=8_000_000))


def test_no_phi_in_logs_warnings_or_errors(
    shared_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = (shared_dir / "dicom" / "fo-dicom__JPEGwithIcon.dcm").read_bytes()
    secrets = ("Testepastient", "Norsk", "04129700489", "19971204", "1997-12-04")
    ds = dcmread(io.BytesIO(source))
    assert ds.PatientID == "04129700489" and "Testepastient" in str(ds.PatientName)
    ds.PatientBirthDate = "1997-12-04"  # an invalid DA: pydicom's validation would echo it
    invalid = factory.to_bytes(ds)
    ds.NumberOfFrames = 3
    bad_bodies = [source[:20000], source[:-4], source[132:], source.replace(b"DICM", b"DICX")]
    bad_bodies.append(factory.to_bytes(ds))
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert decode_dicom(invalid).patient.identifier == "04129700489"
        for body in bad_bodies:
            with pytest.raises(ServiceError) as error:
                decode_dicom(body)
            texts.append(repr(error.value.problem()))
            texts.extend(repr(arg) for arg in error.value.args)
    texts.extend(str(w.message) for w in caught)
    texts.extend(record.getMessage() for record in caplog.records)
    joined = "\n".join(texts)
    assert len(texts) >= 2 * len(bad_bodies)
    assert not [secret for secret in secrets if secret in joined]
