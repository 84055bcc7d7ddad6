"""Decode a DICOM Part 10 photograph into an upright RGB image, its patient and its identifiers.

Accepted: single-frame VL Photographic, Dermoscopic Photography, Secondary Capture and (colour
only) VL Microscopic images; uncompressed, deflated (inflated under a budget, `deflate`), JPEG
baseline/extended, JPEG 2000 and RLE transfer syntaxes (a compressed frame's own header is
checked against Rows x Columns and the pixel limit before decoding, `frames`); RGB, YBR_* and
MONOCHROME1/2 (grayscale is decoded to RGB so that the quality gate,
not this layer, rejects it). Anything else is a 4xx `ServiceError` whose detail never holds PHI.

pydicom echoes invalid element values in its reading-validation warnings and log records, which
could leak PHI, so reading validation is switched off for the process when this module loads.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom import config as pydicom_config
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID

from service.dicom.deflate import inflate_part10, is_deflated
from service.dicom.frames import check_compressed_frame
from service.dicom.patient import patient_from_dataset
from service.errors import (
    DicomMismatch,
    ImageTooLarge,
    InvalidDicom,
    UnsupportedSopClass,
)
from service.images import DecodedImage, ImageLimits, check_min_side
from service.pipeline.case import DicomOrigin
from service.pipeline.domain import Patient, SourceImage

pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE

DICOM_MEDIA_TYPE = "application/dicom"
VL_MICROSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.2"
#: SOP classes accepted as photographs.
ACCEPTED_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image Storage",
    "1.2.840.10008.5.1.4.1.1.77.1.7": "Dermoscopic Photography Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    VL_MICROSCOPIC: "VL Microscopic Image Storage",
}
#: Transfer syntaxes pydicom decodes with numpy and Pillow only.
ACCEPTED_TRANSFER_SYNTAXES: frozenset[str] = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
        "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.5",  # RLE Lossless
    }
)
COLOUR_PHOTOMETRICS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
MONOCHROME_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2"})
#: Identifiers copied into `DicomImage.source` when present.
SOURCE_KEYWORDS: tuple[str, ...] = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "StudyDate",
    "AccessionNumber",
)
#: Patient and General Study attributes a report instance copies from its source.
PATIENT_KEYWORDS = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight",
)  # fmt: skip
STUDY_KEYWORDS = (
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "StudyDescription",
)  # fmt: skip
_CHUNK = 8192  # pydicom's read size when scanning undefined-length values


@dataclass(frozen=True)
class DicomImage:
    """A decoded DICOM photograph: the image, the patient, identifiers and the parsed header."""

    image: DecodedImage
    patient: Patient
    #: StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, SOPClassUID, Modality, … (present ones).
    source: dict[str, str]
    #: The data set without Pixel Data (the report writer copies the patient and study modules).
    header: Dataset

    def origin(self) -> DicomOrigin:
        """The serialisable part of the header a report instance copies (see `DicomOrigin`)."""
        header = self.header
        modules = {}
        for keyword in PATIENT_KEYWORDS + STUDY_KEYWORDS:
            if keyword in header:
                value = header.get(keyword)  # decoded with the source's character set
                modules[keyword] = "" if value is None else str(value)
        return DicomOrigin(
            study_instance_uid=str(header.get("StudyInstanceUID", "")),
            series_instance_uid=str(header.get("SeriesInstanceUID", "")),
            sop_instance_uid=str(header.get("SOPInstanceUID", "")),
            sop_class_uid=str(header.get("SOPClassUID", "")),
            modules=modules,
        )

    def source_image(self) -> SourceImage:
        """The domain's view of where the image came from."""
        return SourceImage(
            media_type=self.image.media_type,
            sha256=self.image.sha256,
            width=self.image.width,
            height=self.image.height,
            dicom=dict(self.source),
        )


def decode_dicom(
    data: bytes, limits: ImageLimits | None = None, *, today: date | None = None
) -> DicomImage:
    """Decode a DICOM Part 10 photograph, or raise a 4xx `ServiceError` (details hold no PHI)."""
    limits = limits or ImageLimits()
    ds = _read(inflate_part10(data, limits) if is_deflated(data) else data)
    _check_instance(ds, limits)
    rgb = _decode_rgb(ds)
    check_min_side(rgb, limits)
    for keyword in ("PixelData", "IconImageSequence"):
        if keyword in ds:
            delattr(ds, keyword)
    image = DecodedImage(
        rgb=rgb, media_type=DICOM_MEDIA_TYPE, sha256=hashlib.sha256(data).hexdigest(), source=data
    )
    return DicomImage(
        image=image, patient=patient_from_dataset(ds, today=today), source=_source(ds), header=ds
    )


class _Reader(io.BytesIO):
    """A byte stream that notices pydicom reading past the end of a truncated element."""

    short_read = False

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        if size is not None and 0 < len(chunk) < size and size != _CHUNK:
            self.short_read = True
        return chunk


def _read(data: bytes) -> Dataset:
    """Parse the whole file; refuse non-Part-10 bodies and truncated files."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise InvalidDicom(
            "the body is not a DICOM Part 10 file (no 128-byte preamble and 'DICM' prefix)"
        )
    stream = _Reader(data)
    try:
        ds = pydicom.dcmread(stream)
    except Exception as exc:  # pydicom raises struct.error, EOFError, ValueError, … on garbage
        raise InvalidDicom("the DICOM file cannot be parsed (corrupt or truncated)") from exc
    if stream.short_read or stream.tell() != len(data) or _has_short_element(ds):
        raise InvalidDicom("the DICOM file is truncated")
    if "TransferSyntaxUID" not in ds.file_meta:
        raise InvalidDicom("the DICOM file meta information has no Transfer Syntax UID")
    return ds


def _has_short_element(ds: Dataset) -> bool:
    """True when a defined-length element holds fewer bytes than its header declares."""
    for elem in ds._dict.values():
        if not isinstance(elem, RawDataElement) or not isinstance(elem.value, bytes):
            continue
        if elem.length != 0xFFFFFFFF and len(elem.value) < elem.length:
            return True
    return False


def _check_instance(ds: Dataset, limits: ImageLimits) -> None:
    """SOP class, frames, transfer syntax, photometric, size and pixel-data length."""
    sop_class = str(ds.get("SOPClassUID", "") or "")
    frames = _int(ds.get("NumberOfFrames"), default=1)
    if sop_class not in ACCEPTED_SOP_CLASSES:
        name = UID(sop_class).name if sop_class else "(missing)"
        suffix = f" ({frames} frames)" if frames > 1 else ""
        raise UnsupportedSopClass(
            f"SOP class {name}{suffix} is not a photographic image; send a single-frame "
            "VL Photographic, Dermoscopic Photography, Secondary Capture or VL Microscopic image"
        )
    if frames != 1:
        raise DicomMismatch(
            f"the instance has {frames} frames; only single-frame photographs are accepted"
        )
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    if syntax not in ACCEPTED_TRANSFER_SYNTAXES:
        raise InvalidDicom(
            f"transfer syntax {syntax.name} is not supported; use uncompressed, JPEG "
            "baseline/extended, JPEG 2000 or RLE Lossless"
        )
    if "PixelData" not in ds:
        raise DicomMismatch("the instance has no Pixel Data")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip()
    if photometric not in COLOUR_PHOTOMETRICS | MONOCHROME_PHOTOMETRICS:
        raise InvalidDicom(
            f"photometric interpretation {photometric or '(missing)'} is not supported"
        )
    if sop_class == VL_MICROSCOPIC and photometric not in COLOUR_PHOTOMETRICS:
        raise UnsupportedSopClass("VL Microscopic images are accepted only in colour")
    rows, columns = _int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0)
    samples, bits = _int(ds.get("SamplesPerPixel"), 0), _int(ds.get("BitsAllocated"), 0)
    expected_samples = 3 if photometric in COLOUR_PHOTOMETRICS else 1
    if rows < 1 or columns < 1 or samples != expected_samples or bits not in (8, 16):
        raise DicomMismatch(
            "the image pixel module is inconsistent (Rows, Columns, Samples per Pixel, "
            "Bits Allocated)"
        )
    if rows * columns > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {columns}x{rows} pixels; the limit is {limits.max_pixels} pixels",
            limit_pixels=limits.max_pixels,
        )
    if syntax.is_compressed:
        check_compressed_frame(ds, syntax, rows, columns, samples * (bits // 8), limits)
    else:
        per_pixel = 2 if photometric == "YBR_FULL_422" else samples
        expected = rows * columns * per_pixel * (bits // 8)
        actual = len(ds.PixelData)
        if actual not in (expected, expected + expected % 2):
            raise DicomMismatch(
                f"Pixel Data holds {actual} bytes; Rows x Columns x samples needs {expected}"
            )


def _decode_rgb(ds: Dataset) -> Image.Image:
    """Pixel data → 8-bit RGB (YBR converted by pydicom, grayscale replicated)."""
    try:
        array = pixel_array(ds)
    except Exception as exc:  # pydicom and its plugins raise many types on bad pixel data
        syntax = UID(str(ds.file_meta.TransferSyntaxUID)).name
        raise InvalidDicom(f"the {syntax} pixel data cannot be decoded") from exc
    photometric = str(ds.PhotometricInterpretation).strip()
    if photometric in MONOCHROME_PHOTOMETRICS:
        if array.dtype != np.uint8:
            array = _to_uint8(array.astype(np.float64), stretch=True)
        if photometric == "MONOCHROME1":
            array = 255 - array
        array = np.repeat(array[:, :, np.newaxis], 3, axis=2)
    elif array.dtype != np.uint8:
        bits_stored = _int(ds.get("BitsStored"), 16)
        array = _to_uint8(array.astype(np.float64) / (2**bits_stored - 1) * 255, stretch=False)
    if array.ndim != 3 or array.shape[2] != 3:
        raise DicomMismatch("the decoded pixel data does not have the declared shape")
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def _to_uint8(values: np.ndarray, *, stretch: bool) -> np.ndarray:
    """Scale to 0..255 (min-max when `stretch`, for monochrome) and round to uint8."""
    if stretch:
        low, high = float(values.min()), float(values.max())
        values = (values - low) / (high - low or 1.0) * 255
    scaled: np.ndarray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return scaled


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _source(ds: Dataset) -> dict[str, str]:
    return {k: str(ds.get(k)).strip() for k in SOURCE_KEYWORDS if ds.get(k) not in (None, "")}
