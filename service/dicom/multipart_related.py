"""Strict `multipart/related` parsing (RFC 2387 / RFC 2046 §5.1) for DICOMweb STOW-RS bodies.

Status rules: a media type other than `multipart/related; type="application/dicom"` (including
a missing `type`) is 415; a missing or invalid boundary, a body without a closing delimiter,
a malformed part or no parts at all is 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.errors import BadRequest, UnsupportedMediaType

DICOM = "application/dicom"
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
#: Unquoted values may also hold "/" (type=application/dicom is common, though RFC 2045 says quote).
_PARAM = re.compile(rf'\s*;\s*({_TOKEN})\s*=\s*({_TOKEN}(?:/{_TOKEN})?|"(?:[^"\\\r\n]|\\.)*")\s*')
_BCHARS = re.compile(r"^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$")
_ALLOWED_ENCODINGS = frozenset({"binary", "8bit", "7bit"})


@dataclass(frozen=True)
class Part:
    """One body part: lower-cased header names, its media type and its raw bytes."""

    headers: dict[str, str]
    content_type: str
    body: bytes


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """`type/subtype; a=b; c="d"` → ("type/subtype", {"a": "b", "c": "d"}) (names lower-cased)."""
    head, _, rest = value.partition(";")
    media_type = head.strip().lower()
    if not re.fullmatch(rf"{_TOKEN}/{_TOKEN}", media_type):
        raise BadRequest("the Content-Type header is not a valid media type")
    params: dict[str, str] = {}
    rest = ";" + rest if rest else ""
    position = 0
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if not match:
            raise BadRequest("the Content-Type parameters are malformed")
        name, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name] = raw
        position = match.end()
    return media_type, params


def parse_multipart_related(content_type: str, body: bytes) -> list[Part]:
    """Split a STOW-RS body into its parts, or raise 400/415 (see the module docstring)."""
    media_type, params = parse_media_type(content_type)
    if media_type != "multipart/related":
        raise UnsupportedMediaType(
            f'{media_type} is not accepted; send multipart/related; type="{DICOM}"'
        )
    root_type = params.get("type", "").strip().lower()
    if root_type != DICOM:
        shown = root_type or "(missing)"
        raise UnsupportedMediaType(
            f'multipart/related type {shown} is not accepted; only type="{DICOM}" is supported'
        )
    boundary = params.get("boundary")
    if boundary is None:
        raise BadRequest("the multipart/related Content-Type has no boundary parameter")
    if not _BCHARS.match(boundary):
        raise BadRequest("the multipart boundary is not valid (RFC 2046: 1-70 characters)")
    return _split(body, ("--" + boundary).encode("ascii"), root_type)


def _split(body: bytes, delimiter: bytes, root_type: str) -> list[Part]:
    if body.startswith(delimiter):
        position = 0
    else:
        found = body.find(b"\r\n" + delimiter)
        if found < 0:
            raise BadRequest("the multipart body has no boundary delimiter")
        position = found + 2  # the preamble before it is ignored
    parts: list[Part] = []
    while True:
        position += len(delimiter)
        if body.startswith(b"--", position):
            break  # close delimiter: the epilogue after it is ignored
        while body[position : position + 1] in (b" ", b"\t"):
            position += 1  # transport padding
        if not body.startswith(b"\r\n", position):
            raise BadRequest("a multipart boundary delimiter is not followed by CRLF")
        start = position + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise BadRequest("the multipart body is truncated (no closing boundary delimiter)")
        parts.append(_part(body[start:end], root_type, len(parts) + 1))
        position = end + 2
    if not parts:
        raise BadRequest("the multipart/related body has no parts")
    return parts


def _part(raw: bytes, root_type: str, number: int) -> Part:
    if raw.startswith(b"\r\n"):
        header_block, content = b"", raw[2:]
    else:
        header_block, separator, content = raw.partition(b"\r\n\r\n")
        if not separator:
            raise BadRequest(f"multipart part {number} has no blank line after its headers")
    headers: dict[str, str] = {}
    for line in header_block.split(b"\r\n") if header_block else []:
        name, colon, value = line.partition(b":")
        if not colon or not re.fullmatch(_TOKEN.encode(), name):
            raise BadRequest(f"multipart part {number} has a malformed header line")
        headers[name.decode("ascii").lower()] = value.decode("latin-1").strip()
    encoding = headers.get("content-transfer-encoding", "binary").lower()
    if encoding not in _ALLOWED_ENCODINGS:
        raise BadRequest(f"multipart part {number} uses Content-Transfer-Encoding {encoding}")
    part_type = root_type
    if "content-type" in headers:
        part_type, _ = parse_media_type(headers["content-type"])
    return Part(headers=headers, content_type=part_type, body=content)
