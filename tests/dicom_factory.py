"""Build DICOM test instances from photos: good ones (VL Photographic, Dermoscopic) and bad ones."""

from __future__ import annotations

import io
from datetime import datetime

from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
DERMOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.7"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

KOREAN_PATIENT = {
    "PatientName": "홍^길동",
    "PatientID": "KR-20240001",
    "PatientBirthDate": "19800215",
    "PatientSex": "F",
}


def jpeg_baseline(image: Image.Image, quality: int = 92) -> bytes:
    """JPEG baseline, 4:2:2 chroma subsampling (DICOM photometric YBR_FULL_422)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality, subsampling=1)
    return buffer.getvalue()


def photo_dataset(
    image: Image.Image,
    *,
    sop_class: str = VL_PHOTOGRAPHIC,
    jpeg: bool = False,
    patient: dict[str, str] | None = None,
    charset: str | None = "ISO_IR 192",
    study_date: str = "20250301",
    complete: bool = True,
) -> Dataset:
    """A single-frame colour photo instance (uncompressed RGB or JPEG baseline YBR_FULL_422).

    `complete`: every attribute its IOD requires (dciodvfy reports no error); False leaves out
    the acquisition context, lossy-compression, laterality and dermoscopy attributes (IOD
    errors a STOW-RS answer must warn about).
    """
    rgb = image.convert("RGB")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if charset:
        ds.SpecificCharacterSet = charset
    for keyword, value in (KOREAN_PATIENT if patient is None else patient).items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study_date, "101500", "ACC-1"
    ds.StudyID, ds.ReferringPhysicianName = "1", ""
    ds.Modality = "DMS" if sop_class == DERMOSCOPIC else "XC"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Manufacturer = "skinscreen-tests"
    ds.ContentDate, ds.ContentTime = study_date, "101500"
    ds.AcquisitionDateTime = datetime(2025, 3, 1, 10, 15).strftime("%Y%m%d%H%M%S")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows, ds.Columns = rgb.height, rgb.width
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if complete:
        _complete(ds, sop_class, jpeg)
    if jpeg:
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PixelData = encapsulate([jpeg_baseline(rgb)])
        ds["PixelData"].VR = "OB"
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = rgb.tobytes()
        ds["PixelData"].VR = "OB"
    return ds


def _complete(ds: Dataset, sop_class: str, jpeg: bool) -> None:
    """The Type 1/2 (and 2C) attributes of the VL Photographic and Dermoscopic IODs."""
    ds.LossyImageCompression = "01" if jpeg else "00"
    ds.Laterality, ds.PatientOrientation = "", ""
    ds.AcquisitionContextSequence = Sequence([])
    if sop_class == DERMOSCOPIC:
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = generate_uid(), ""
        ds.ManufacturerModelName, ds.DeviceSerialNumber = "test camera", "T-1"
        ds.SoftwareVersions, ds.RecognizableVisualFeatures = "1.0", "NO"
        ds.LightSourcePolarization, ds.EmitterColorTemperature = [], None
        ds.ContactMethod, ds.OpticalMagnificationFactor = [], None


def to_bytes(ds: Dataset) -> bytes:
    """Part 10 bytes (preamble, DICM, file meta)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def vl_photo(
    image: Image.Image, *, jpeg: bool = False, patient: dict[str, str] | None = None
) -> bytes:
    """VL Photographic Image Storage (77.1.4) Part 10 bytes."""
    return to_bytes(photo_dataset(image, sop_class=VL_PHOTOGRAPHIC, jpeg=jpeg, patient=patient))


def dermoscopic(
    image: Image.Image, *, jpeg: bool = False, patient: dict[str, str] | None = None
) -> bytes:
    """Dermoscopic Photography Image Storage (77.1.7) Part 10 bytes."""
    return to_bytes(photo_dataset(image, sop_class=DERMOSCOPIC, jpeg=jpeg, patient=patient))


# --- bad inputs ---------------------------------------------------------------------------------


def without_preamble(image: Image.Image) -> bytes:
    """A data set with no 128-byte preamble and no 'DICM' prefix."""
    return to_bytes(photo_dataset(image))[132:]


def truncated(image: Image.Image, *, keep: float = 0.6) -> bytes:
    """A valid instance cut short in its pixel data."""
    data = to_bytes(photo_dataset(image))
    return data[: int(len(data) * keep)]


def without_pixel_data(image: Image.Image) -> bytes:
    """An instance whose Pixel Data element is missing."""
    ds = photo_dataset(image)
    del ds.PixelData
    return to_bytes(ds)


def wrong_pixel_length(image: Image.Image) -> bytes:
    """Rows/Columns say one size, Pixel Data holds fewer bytes (a well-formed element)."""
    ds = photo_dataset(image)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    return to_bytes(ds)


def text_sr() -> bytes:
    """A Basic Text SR instance (no pixels): a non-image SOP class."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.PatientName, ds.PatientID = "Doe^Jane", "SR-1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.ValueType = "SR", "CONTAINER"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    return to_bytes(ds)
