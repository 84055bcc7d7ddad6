"""Deflated Explicit VR Little Endian, inflated under a budget (never `zlib.decompress` whole).

pydicom inflates a deflated data set in one call, so a 1 MB upload became gigabytes before any
check ran. Here the header is inflated first (at most `HEADER_BYTES`) and read up to Pixel Data;
the declared image then sets the budget for the rest (its pixel bytes plus a small trailer),
and inflation stops the moment output passes it. The result is the same instance re-labelled
Explicit VR Little Endian, which the normal reader then parses and checks.
"""

from __future__ import annotations

import io
import struct
import zlib

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.tag import BaseTag, Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from service.errors import ImageTooLarge, InvalidDicom
from service.images import ImageLimits, check_bomb

#: Inflated bytes allowed before Pixel Data (the header: patient, study, ICC profile, …).
HEADER_BYTES = 4 * 1024 * 1024
#: Inflated bytes allowed after the pixel data the header declares (trailing elements).
TRAILER_BYTES = 64 * 1024
_CHUNK = 1024 * 1024
_PIXEL_DATA = Tag(0x7FE0, 0x0010)


def file_meta(data: bytes) -> tuple[Dataset, int] | None:
    """The File Meta group and the offset where the data set starts, or None if unreadable."""
    if len(data) < 144 or data[132:136] != b"\x02\x00\x00\x00" or data[136:138] != b"UL":
        return None
    (group_length,) = struct.unpack("<I", data[140:144])
    end = 144 + group_length
    if end > len(data):
        return None
    try:
        meta = read_dataset(io.BytesIO(data[132:end]), is_implicit_VR=False, is_little_endian=True)
    except Exception:  # garbage in the meta group: the normal reader reports it
        return None
    return meta, end


def meta_uids(data: bytes) -> tuple[str, str]:
    """(MediaStorageSOPClassUID, MediaStorageSOPInstanceUID) from the File Meta group alone."""
    found = file_meta(data)
    if found is None:
        return "", ""
    meta = found[0]
    return (
        str(meta.get("MediaStorageSOPClassUID", "")),
        str(meta.get("MediaStorageSOPInstanceUID", "")),
    )


def is_deflated(data: bytes) -> bool:
    """True for a Part 10 file whose transfer syntax is Deflated Explicit VR Little Endian."""
    found = file_meta(data)
    if found is None:  # no group length: look for the UID itself in the first bytes
        return DeflatedExplicitVRLittleEndian.encode() in data[132:4096]
    return str(found[0].get("TransferSyntaxUID", "")).strip("\0 ") == DeflatedExplicitVRLittleEndian


def inflate_part10(data: bytes, limits: ImageLimits) -> bytes:
    """The deflated file `data` as an Explicit VR Little Endian file, inflated under budget."""
    found = file_meta(data)
    if found is None:
        raise InvalidDicom("the deflated DICOM file has no readable File Meta group length")
    meta, start = found
    body = data[start:]
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        head = inflater.decompress(body, HEADER_BYTES)
        budget = _budget(head, inflater, len(body), limits)
        parts, total = [head], len(head)
        while total <= budget and not inflater.eof:
            chunk = inflater.decompress(inflater.unconsumed_tail, min(_CHUNK, budget - total + 1))
            if not chunk and not inflater.unconsumed_tail:
                raise InvalidDicom("the deflated data set is truncated")
            total += len(chunk)
            parts.append(chunk)
        if total > budget:
            raise ImageTooLarge(
                "the deflated data set inflates beyond what its declared image needs",
                limit_pixels=limits.max_pixels,
            )
    except zlib.error as exc:
        raise InvalidDicom("the deflated data set is corrupt") from exc
    return data[:132] + _explicit_meta(meta) + b"".join(parts)


def _budget(head: bytes, inflater: zlib._Decompress, encoded: int, limits: ImageLimits) -> int:
    """Inflated bytes the declared image may take: header + pixel bytes + trailer."""
    at: list[int] = []

    def at_pixel_data(tag: BaseTag, _vr: str | None, _length: int) -> bool:
        if tag == _PIXEL_DATA:
            at.append(1)
            return True
        return False

    stream = io.BytesIO(head)
    try:
        header = read_dataset(
            stream, is_implicit_VR=False, is_little_endian=True, stop_when=at_pixel_data
        )
    except Exception as exc:  # a truncated or garbled header
        if inflater.eof:
            raise InvalidDicom("the deflated data set cannot be parsed") from exc
        header = Dataset()
    if not at:
        if inflater.eof:
            return len(head)  # no Pixel Data at all: the normal checks refuse it
        if len(head) < HEADER_BYTES:
            raise InvalidDicom("the deflated data set is truncated")
        raise ImageTooLarge(
            f"the deflated header is over {HEADER_BYTES} bytes before Pixel Data",
            limit_pixels=limits.max_pixels,
        )
    rows, columns = _int(header.get("Rows")), _int(header.get("Columns"))
    samples, bits = _int(header.get("SamplesPerPixel")), _int(header.get("BitsAllocated"))
    frames = max(_int(header.get("NumberOfFrames"), 1), 1)
    pixel_bytes = rows * columns * max(samples, 1) * max(bits // 8, 1) * frames
    check_bomb(columns, rows * frames, max(samples, 1) * max(bits // 8, 1), encoded, limits)
    return stream.tell() + 12 + pixel_bytes + 1 + TRAILER_BYTES


def _explicit_meta(meta: Dataset) -> bytes:
    """'DICM' + the File Meta group re-labelled Explicit VR Little Endian."""
    relabelled = FileMetaDataset(meta)
    relabelled.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = DicomBytesIO()
    try:
        write_file_meta_info(buffer, relabelled, enforce_standard=True)
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidDicom("the DICOM File Meta information is incomplete") from exc
    return buffer.getvalue()


def _int(value: object, default: int = 0) -> int:
    try:
        return int(value) if value not in (None, "") else default  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default
