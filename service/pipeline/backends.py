"""Choose and load the classifier backend named in settings: yolo | effnet | ensemble | default."""

from __future__ import annotations

import json
from pathlib import Path

from service.pipeline.classifier import (
    Classifier,
    EnsembleClassifier,
    FeatureCompanion,
    OnnxClassifier,
)
from service.pipeline.gate_config import GateConfig
from service.pipeline.screening import Screener
from service.settings import Settings

ENSEMBLE_CARD = "skinscreen-ensemble.json"


def card_path(settings: Settings, backend: str) -> Path:
    """The model card file of a single-model backend."""
    stem = {"yolo": settings.yolo_model, "effnet": settings.effnet_model}[backend]
    return settings.models_dir / f"{stem}.json"


def ensemble_member_cards(settings: Settings) -> list[Path]:
    """The member cards the ensemble card lists, in the order of its weights (YOLO and
    EfficientNet when there is no card or it names none). A member is a file in `models_dir`."""
    path = settings.models_dir / ENSEMBLE_CARD
    names: list[str] = []
    if path.is_file():
        members = json.loads(path.read_text(encoding="utf-8")).get("members", [])
        names = [str(m["card"]) for m in members if "card" in m]
    if not names:
        return [card_path(settings, b) for b in ("yolo", "effnet")]
    for name in names:
        if Path(name).name != name:
            raise ValueError(f"{path}: member card {name!r} is not a file name in models_dir")
    return [settings.models_dir / name for name in names]


def available_backends(settings: Settings) -> list[str]:
    """Backends whose model files are shipped in `models_dir` (the ensemble: two members or
    more, every one present)."""
    singles = [b for b in ("yolo", "effnet") if card_path(settings, b).is_file()]
    members = ensemble_member_cards(settings)
    ensemble = len(members) >= 2 and all(m.is_file() for m in members)
    return [*singles, "ensemble"] if ensemble else singles


def headline_macro_f1(settings: Settings, backend: str) -> tuple[bool, float]:
    """(cross-validated?, macro-F1) recorded for a backend: its card's out-of-fold CV figure
    when it has one, else its val figure (chosen on val, so optimistic); (False, -1) without."""
    path = (
        settings.models_dir / ENSEMBLE_CARD
        if backend == "ensemble"
        else card_path(settings, backend)
    )
    if not path.is_file():
        return False, -1.0
    metrics = json.loads(path.read_text(encoding="utf-8")).get("metrics", {})
    if "cross_validated" in metrics:
        return True, float(metrics["cross_validated"]["macro_f1"])
    return False, float(metrics.get("val", {}).get("macro_f1", -1.0))


def default_backend(settings: Settings) -> str:
    """The shipped backend with the best macro-F1 (ties: the simpler model). A cross-validated
    figure beats any val figure: val chose the epochs and temperatures of a val-scored model."""
    candidates = available_backends(settings)
    if not candidates:
        raise FileNotFoundError(f"no model cards in {settings.models_dir}")
    return max(candidates, key=lambda b: (*headline_macro_f1(settings, b), -candidates.index(b)))


def resolve_backend(settings: Settings) -> str:
    """The backend that `settings.classifier` names, with `default` resolved."""
    return default_backend(settings) if settings.classifier == "default" else settings.classifier


def ensemble_weights(settings: Settings) -> list[float] | None:
    """The ensemble card's member weights (its members' order), None for a plain mean."""
    path = settings.models_dir / ENSEMBLE_CARD
    if not path.is_file():
        return None
    weights = json.loads(path.read_text(encoding="utf-8")).get("weights")
    return [float(w) for w in weights] if weights else None


def ensemble_temperature(settings: Settings) -> float:
    """The ensemble's own calibration temperature (1.0 when its card has none)."""
    path = settings.models_dir / ENSEMBLE_CARD
    if not path.is_file():
        return 1.0
    card = json.loads(path.read_text(encoding="utf-8"))
    return float(card.get("calibration", {}).get("temperature", 1.0))


def load_classifier(settings: Settings, backend: str | None = None) -> Classifier:
    """Load a backend once (at start-up); ONNX sessions are reused for every request."""
    name = backend or resolve_backend(settings)
    if name == "ensemble":
        return EnsembleClassifier(
            [
                OnnxClassifier.from_card_path(member, settings.onnx_threads)
                for member in ensemble_member_cards(settings)
            ],
            temperature=ensemble_temperature(settings),
            weights=ensemble_weights(settings),
        )
    classifier = OnnxClassifier.from_card_path(card_path(settings, name), settings.onnx_threads)
    if classifier.has_features or not card_path(settings, "effnet").is_file():
        return classifier
    # no features of its own (YOLO): the gate borrows EfficientNet's, see FeatureCompanion
    companion = OnnxClassifier.from_card_path(card_path(settings, "effnet"), settings.onnx_threads)
    return FeatureCompanion(classifier, companion) if companion.has_features else classifier


def load_screener(settings: Settings, backend: str | None = None) -> Screener:
    """The gate + classifier pair every door, the CLI and the benchmarks use."""
    return Screener(
        load_classifier(settings, backend),
        GateConfig.load(settings.models_dir),
        settings.inconclusive_below,
        settings.inconclusive_margin,
    )
