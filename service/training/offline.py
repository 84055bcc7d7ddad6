"""Make Ultralytics run with zero network access (see shared/ML.md)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def prepare_offline_ultralytics(config_dir: Path) -> None:
    """Set the environment so that importing and using Ultralytics never touches the network.

    Must run before `ultralytics` is imported: it reads YOLO_OFFLINE and YOLO_CONFIG_DIR at import.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("YOLO_VERBOSE", "True")
    font_target = config_dir / "Ultralytics" / "Arial.ttf"
    if not font_target.exists():
        font_target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_any_ttf(), font_target)
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})


def _any_ttf() -> Path:
    """A TrueType font from matplotlib or the system, used only for Ultralytics' plots."""
    candidates: list[Path] = []
    try:
        import matplotlib

        candidates.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
    except ImportError:
        pass
    candidates += [
        Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
        Path("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf"),
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "no TrueType font found for Ultralytics plots (install fonts-dejavu-core)"
    )
