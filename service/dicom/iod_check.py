"""A light IOD check of a stored photograph: the Type 1 and Type 2 attributes its IOD requires.

STOW-RS stores an instance with such errors (the pixels are still usable) but says so: the
Referenced SOP Sequence item carries Warning Reason 0xB007 "Data Set does not match SOP Class"
(PS3.18 Table 10.5.3-3) and the answer names the missing attributes. Type 1 must be present and
non-empty, Type 2 present (possibly empty). Conditional (1C/2C) attributes are not checked.
The tables follow the PS3.3 IODs of the accepted SOP classes (VL Photographic, Dermoscopic
Photography, VL Microscopic, Secondary Capture) as `dciodvfy` reports them; it is the full check.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
DERMOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.7"
VL_MICROSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

_TYPE1 = (
    "StudyInstanceUID", "Modality", "SeriesInstanceUID", "SamplesPerPixel",
    "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "SOPClassUID", "SOPInstanceUID",
)  # fmt: skip
_TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "Manufacturer",
    "InstanceNumber",
)  # fmt: skip
_VL1, _VL2 = ("ImageType",), ("ContentDate", "ContentTime", "AcquisitionContextSequence")
_VL2_LOSSY = ("LossyImageCompression",)
_DERMOSCOPIC1 = ("SoftwareVersions", "RecognizableVisualFeatures")
_DERMOSCOPIC2 = ("EmitterColorTemperature", "ContactMethod", "OpticalMagnificationFactor")
#: (Type 1, Type 2) beyond the common modules, per SOP class.
_BY_CLASS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    VL_PHOTOGRAPHIC: (_VL1, _VL2 + _VL2_LOSSY),
    VL_MICROSCOPIC: (_VL1, _VL2 + _VL2_LOSSY),
    DERMOSCOPIC: (
        (
            *_VL1,
            "FrameOfReferenceUID",
            "ManufacturerModelName",
            "DeviceSerialNumber",
            *_DERMOSCOPIC1,
        ),
        (
            *_VL2,
            *_VL2_LOSSY,
            "PositionReferenceIndicator",
            "LightSourcePolarization",
            *_DERMOSCOPIC2,
        ),
    ),
    SECONDARY_CAPTURE: (("ConversionType",), ()),
}
#: Enumerated Modality values of the IODs that fix one.
_MODALITY = {VL_PHOTOGRAPHIC: "XC", VL_MICROSCOPIC: "GM"}


def iod_problems(ds: Dataset) -> list[str]:
    """Missing or empty required attributes and wrong enumerated values (keywords, no data)."""
    sop_class = str(ds.get("SOPClassUID", "") or "")
    extra1, extra2 = _BY_CLASS.get(sop_class, ((), ()))
    problems = [f"{k} (Type 1) is missing or empty" for k in _TYPE1 + extra1 if _empty(ds, k)]
    problems += [f"{k} (Type 2) is missing" for k in _TYPE2 + extra2 if k not in ds]
    expected = _MODALITY.get(sop_class)
    modality = str(ds.get("Modality", "") or "")
    if expected and modality and modality != expected:
        problems.append(f"Modality must be {expected} for this SOP class")
    return problems


def _empty(ds: Dataset, keyword: str) -> bool:
    if keyword not in ds:
        return True
    value = ds[keyword].value
    return value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0)
