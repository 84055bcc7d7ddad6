"""Folder-per-class image sets (Ultralytics layout) and the skin6 manifest."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass(frozen=True)
class LabelledImage:
    """One image file with its class index and near-duplicate group."""

    path: Path
    label: int
    group: str


def list_labelled_images(
    folder: Path, classes: tuple[str, ...], manifest: Path | None = None
) -> list[LabelledImage]:
    """Images under `folder/<Class>/`, in a stable order; groups come from the manifest.

    Without a manifest (or for a file it does not list) each image is its own group.
    Class folders must be a subset of `classes`.
    """
    groups = _groups_from_manifest(manifest, folder) if manifest else {}
    found: list[LabelledImage] = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if class_dir.name not in classes:
            raise ValueError(f"unknown class folder {class_dir.name!r}; expected {classes}")
        label = classes.index(class_dir.name)
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                key = path.resolve()
                found.append(LabelledImage(path, label, groups.get(key, path.stem)))
    return found


def _groups_from_manifest(manifest: Path, folder: Path) -> dict[Path, str]:
    root = manifest.parent
    with manifest.open(newline="") as handle:
        return {(root / row["file"]).resolve(): row["group"] for row in csv.DictReader(handle)}


def find_manifest(folder: Path) -> Path | None:
    """The manifest.csv of a skin6-style dataset, given the dataset or one of its splits."""
    for candidate in (folder / "manifest.csv", folder.parent / "manifest.csv"):
        if candidate.is_file():
            return candidate
    return None


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
