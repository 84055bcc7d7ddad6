"""Encryption at rest of the stored photos and artifacts (PDFs, FHIR/DICOM outputs), both
backends: AES-256-GCM with a key from `SKINSCREEN_ENCRYPTION_KEY_FILE`.

A sealed blob is `MAGIC (8) | key id (8) | nonce (12) | ciphertext + tag (16)`; the
associated data is the job id and the blob's kind, so a blob moved to another job or kind
fails authentication. The key id (a hash of the key) tells "another key" from "tampered".
A blob without the magic is an unencrypted row written before a key was configured and is read
as it is. The key file holds 64 hex digits (32 bytes), may be read only by its owner (0600 or
0400), and is refused otherwise with a message that says why.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from service.errors import StoredDataUnreadable

MAGIC = b"SKSEAL\x00\x01"
_ID, _NONCE = 8, 12
_HEADER = len(MAGIC) + _ID + _NONCE


class SealingKeyError(ValueError):
    """The key file cannot be used (missing, readable by others, wrong length, not hex)."""


def load_key(path: Path) -> bytes:
    """The 32-byte key in `path` (64 hex digits, surrounding whitespace ignored)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SealingKeyError(f"encryption key file {path}: cannot be read ({exc})") from None
    if not stat.S_ISREG(mode) or mode & 0o077:
        raise SealingKeyError(
            f"encryption key file {path}: mode {stat.S_IMODE(mode):04o} lets others read it; "
            "chmod 600 it"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise SealingKeyError(f"encryption key file {path}: not hexadecimal") from None
    if len(key) != 32:
        raise SealingKeyError(
            f"encryption key file {path}: {len(key)} bytes, an AES-256 key has 32 "
            '(64 hex digits: python -c "import os;print(os.urandom(32).hex())")'
        )
    return key


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"skinscreen-sealing-key-id\x00" + key).digest()[:_ID]


class Sealer:
    """Seals blobs with the key, when there is one; opens sealed and unencrypted blobs."""

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = AESGCM(key) if key is not None else None
        self.key_id = key_id(key) if key is not None else None

    @classmethod
    def from_file(cls, path: Path | None) -> Sealer:
        return cls(load_key(path) if path is not None else None)

    @property
    def enabled(self) -> bool:
        return self._aead is not None

    @staticmethod
    def _aad(job_id: str, kind: str) -> bytes:
        return b"skinscreen/v1\x00" + job_id.encode() + b"\x00" + kind.encode()

    def seal(self, data: bytes, job_id: str, kind: str) -> bytes:
        """`data` encrypted (as it is without a key)."""
        if self._aead is None or self.key_id is None:
            return data
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, data, self._aad(job_id, kind))
        return MAGIC + self.key_id + nonce + sealed

    def open(self, blob: bytes, job_id: str, kind: str) -> bytes:
        """The plain bytes of a stored blob; `StoredDataUnreadable` when they cannot be had."""
        if not blob.startswith(MAGIC):
            return blob
        stored_id = blob[len(MAGIC) : len(MAGIC) + _ID]
        if self._aead is None:
            raise StoredDataUnreadable(
                "stored data is encrypted and no encryption key is configured", retry_after=60
            )
        if stored_id != self.key_id:
            raise StoredDataUnreadable(
                "stored data was encrypted with another key than the configured one",
                retry_after=60,
            )
        nonce = blob[len(MAGIC) + _ID : _HEADER]
        try:
            return self._aead.decrypt(nonce, blob[_HEADER:], self._aad(job_id, kind))
        except InvalidTag:
            raise StoredDataUnreadable(
                "stored data failed authentication (altered, or moved from another job)",
                retry_after=60,
            ) from None

    def check(self, blob: bytes | None, job_id: str, kind: str) -> None:
        """Start-up check on a stored blob: `SealingKeyError` when this key cannot open it."""
        if blob is None:
            return
        try:
            self.open(blob, job_id, kind)
        except StoredDataUnreadable as exc:
            raise SealingKeyError(f"the store cannot be opened: {exc.detail}") from None
