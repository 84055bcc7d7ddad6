"""Decompression bombs for tests and benchmarks, built by streaming (never held inflated here).

- `png_bomb`: a valid PNG of `width` x `height` black RGB pixels (tens of MP in ~100 KB).
- `deflated_dicom`: a genuine Deflated Explicit VR Little Endian instance (it must be accepted).
- `rle_bomb`: an RLE Lossless instance declaring 64 x 64 RGB whose three segments each
  replicate runs to 64 x `segment` bytes (PackBits: 2 bytes make 128).
- `deflate_bomb`: a deflated VL Photographic instance declaring a small image whose data set
  inflates to `inflated` bytes: zeros in a private element before Pixel Data (`where="header"`),
  or Pixel Data far longer than Rows x Columns needs (`where="pixels"`).
"""

from __future__ import annotations

import struct
import zlib
from typing import Literal

from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless

from tests.dicom_factory import photo_dataset

_ZEROS = bytes(1024 * 1024)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_bomb(width: int = 6300, height: int = 6300) -> bytes:
    """A PNG that decodes to `width` x `height` x 3 bytes (black), compressed row by row."""
    packer = zlib.compressobj(9)
    row = bytes(1 + width * 3)  # filter byte 0 + pixels
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def deflated_dicom(image: Image.Image) -> bytes:
    """A well-formed deflated instance of `image` (pydicom writes the deflate itself)."""
    ds = photo_dataset(image)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = DicomBytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _element_header(group: int, element: int, vr: bytes, length: int) -> bytes:
    return struct.pack("<HH", group, element) + vr + b"\0\0" + struct.pack("<I", length)


def deflate_bomb(
    inflated: int = 1 << 30, *, where: Literal["header", "pixels"] = "header", side: int = 64
) -> bytes:
    """A deflated instance declaring a `side` x `side` RGB photo that inflates to `inflated`."""
    ds = photo_dataset(Image.new("RGB", (side, side), (200, 150, 120)))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    pixels = ds.PixelData
    del ds.PixelData
    head = DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    write_dataset(head, ds)
    meta = DicomBytesIO()
    write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [b"\0" * 128 + b"DICM" + meta.getvalue(), packer.compress(head.getvalue())]
    if where == "header":
        creator = struct.pack("<HH", 0x0009, 0x0010) + b"LO" + struct.pack("<H", 4) + b"BOMB"
        out.append(packer.compress(creator))
        out.append(packer.compress(_element_header(0x0009, 0x1000, b"OB", inflated)))
        out += _zeros(packer, inflated)
        out.append(packer.compress(_element_header(0x7FE0, 0x0010, b"OB", len(pixels))))
        out.append(packer.compress(pixels))
    else:
        out.append(packer.compress(_element_header(0x7FE0, 0x0010, b"OB", inflated)))
        out += _zeros(packer, inflated)
    out.append(packer.flush())
    return b"".join(out)


def _zeros(packer: zlib._Compress, count: int) -> list[bytes]:
    pieces = []
    while count > 0:
        step = min(count, len(_ZEROS))
        pieces.append(packer.compress(_ZEROS[:step]))
        count -= step
    return pieces


def rle_bomb(segment: int = 4 << 20, side: int = 64) -> bytes:
    """An RLE instance whose segments decode to 64 times their size, far past Rows x Columns."""
    ds = photo_dataset(Image.new("RGB", (side, side), (200, 150, 120)))
    ds.file_meta.TransferSyntaxUID = RLELossless
    runs = b"\x81\x00" * (segment // 2)  # 0x81: repeat the next byte 128 times
    offsets = [64 + i * len(runs) for i in range(3)]
    table = struct.pack("<16L", 3, *offsets, *([0] * 12))
    ds.PixelData = encapsulate([table + runs * 3])
    ds["PixelData"].VR = "OB"
    ds.PlanarConfiguration = 1
    ds.PhotometricInterpretation = "RGB"
    buffer = DicomBytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()
