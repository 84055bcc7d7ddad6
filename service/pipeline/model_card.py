"""Model cards: the JSON file beside each shipped model (classes, preprocessing, metrics)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.pipeline.domain import ModelInfo


@dataclass(frozen=True)
class ModelCard:
    """The parts of a model card the serving code needs; `raw` keeps the whole document."""

    path: Path
    raw: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        """Read a card from `models/<name>.json`."""
        return cls(path=path, raw=json.loads(path.read_text(encoding="utf-8")))

    @property
    def name(self) -> str:
        return str(self.raw["name"])

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.raw["classes"])

    @property
    def imgsz(self) -> int:
        return int(self.raw["imgsz"])

    @property
    def mean(self) -> tuple[float, float, float]:
        m = self.raw.get("preprocess", {}).get("mean", [0.0, 0.0, 0.0])
        return (float(m[0]), float(m[1]), float(m[2]))

    @property
    def std(self) -> tuple[float, float, float]:
        s = self.raw.get("preprocess", {}).get("std", [1.0, 1.0, 1.0])
        return (float(s[0]), float(s[1]), float(s[2]))

    @property
    def output(self) -> str:
        """`probabilities` (softmax inside the graph) or `logits`."""
        return str(self.raw.get("output", "probabilities"))

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the graph's outputs when the card lists them (output 0 is `output`)."""
        return tuple(str(name) for name in self.raw.get("outputs", ()))

    @property
    def temperature(self) -> float:
        return float(self.raw.get("calibration", {}).get("temperature", 1.0))

    @property
    def onnx_path(self) -> Path:
        return self.path.parent / str(self.raw["weights"]["onnx"])

    @property
    def onnx_sha256(self) -> str:
        return str(self.raw["weights"]["onnx_sha256"])

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, version=str(self.raw["version"]), sha256=self.onnx_sha256)


def write_card(path: Path, card: dict[str, Any]) -> None:
    """Write a card with stable formatting (sorted keys would scramble the reading order)."""
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
