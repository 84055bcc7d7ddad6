"""Shared fixtures: settings, the reference data in ../shared, tiny generated images."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.ci import IN_CI


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests (marked `anyio`) run on asyncio, like the service."""
    return "asyncio"


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Default settings (tests that need other values build their own)."""
    return Settings()


@pytest.fixture(scope="session")
def shared_dir(settings: Settings) -> Path:
    """`../shared` (or SKINSCREEN_SHARED_DIR). Skips loudly when absent; fails under CI."""
    path = settings.shared_dir
    if not (path / "data" / "skin6").is_dir():
        message = (
            f"REFERENCE DATA MISSING: {path} has no data/skin6 — set SKINSCREEN_SHARED_DIR "
            "to the shared folder to run this test"
        )
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def skin6_dir(shared_dir: Path) -> Path:
    """The skin6 train/val data set."""
    return shared_dir / "data" / "skin6"


@pytest.fixture(scope="session")
def skin6_val_images(skin6_dir: Path) -> dict[str, list[Path]]:
    """Val image paths per class, sorted."""
    return {
        d.name: sorted(d.glob("*.jpg")) for d in sorted((skin6_dir / "val").iterdir()) if d.is_dir()
    }


@pytest.fixture(scope="session")
def skin_jpeg(skin6_val_images: dict[str, list[Path]]) -> bytes:
    """A real skin6 val photo (Acne) as JPEG bytes."""
    return skin6_val_images["Acne"][0].read_bytes()
