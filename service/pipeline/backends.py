"""Choose and load the classifier backend named in settings: yolo | effnet | ensemble | default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.logging import get_logger
from service.pipeline.classifier import (
    Classifier,
    EnsembleClassifier,
    FeatureCompanion,
    OnnxClassifier,
)
from service.pipeline.gate_config import GateConfig
from service.pipeline.model_card import ModelCard
from service.pipeline.screening import Screener
from service.settings import Settings

ENSEMBLE_CARD = "skinscreen-ensemble.json"
log = get_logger(__name__)


def card_path(settings: Settings, backend: str) -> Path:
    """The model card file of a single-model backend."""
    stem = {"yolo": settings.yolo_model, "effnet": settings.effnet_model}[backend]
    return settings.models_dir / f"{stem}.json"


def _ensemble_card(settings: Settings) -> dict[str, Any] | None:
    """The ensemble card, None without one; ValueError when it is not a card."""
    path = settings.models_dir / ENSEMBLE_CARD
    if not path.is_file():
        return None
    card = json.loads(path.read_text(encoding="utf-8"))
    members = card.get("members", []) if isinstance(card, dict) else None
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise ValueError(f"{ENSEMBLE_CARD} is not a model card with a list of members")
    result: dict[str, Any] = card
    return result


def ensemble_member_cards(settings: Settings, card: dict[str, Any] | None = None) -> list[Path]:
    """The member cards the ensemble card (read here unless given) lists, in the order of its
    weights (YOLO and EfficientNet when there is no card or it names none). A member is a file
    in `models_dir`; a malformed list raises ValueError."""
    if card is None:
        card = _ensemble_card(settings) or {}
    members = card.get("members", [])
    if not members:
        return [card_path(settings, b) for b in ("yolo", "effnet")]
    names = [str(m.get("card", "")) for m in members]
    for name in names:
        if not name or Path(name).name != name:
            raise ValueError(
                f"{ENSEMBLE_CARD}: member card {name!r} is not a file name in models_dir"
            )
    return [settings.models_dir / name for name in names]


def _stale_members(settings: Settings, card: dict[str, Any]) -> list[str]:
    """Members whose card's ONNX sha256 is not the one the ensemble card was fitted with."""
    stale = []
    paths = ensemble_member_cards(settings, card)  # (the defaults when it lists none: no pairs)
    for member, path in zip(card.get("members", []), paths, strict=False):
        recorded = member.get("onnx_sha256")
        if recorded and path.is_file() and ModelCard.load(path).onnx_sha256 != recorded:
            stale.append(path.name)
    return stale


def available_backends(settings: Settings) -> list[str]:
    """Backends whose model files are shipped in `models_dir`. The ensemble needs two members
    or more, every one present and still the weights its card was fitted with; a malformed
    or stale ensemble card leaves it out (logged) rather than stopping the single models."""
    singles = [b for b in ("yolo", "effnet") if card_path(settings, b).is_file()]
    try:
        card = _ensemble_card(settings) or {}
        members = ensemble_member_cards(settings, card)
        stale = _stale_members(settings, card)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        log.warning("ensemble.card_invalid", error=str(exc))
        return singles
    if stale:
        log.warning("ensemble.members_changed", members=stale)
        return singles
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
    figure beats any val figure: val chose the epochs and temperatures of a val-scored model.
    An ensemble whose card says it does not beat its best member (`beats_best_single`) is
    never the default, even where that member is not served alone."""
    candidates = available_backends(settings)
    if "ensemble" in candidates:  # its card was readable just now
        card = _ensemble_card(settings) or {}
        if card.get("metrics", {}).get("cross_validated", {}).get("beats_best_single") is False:
            candidates.remove("ensemble")
    if not candidates:
        raise FileNotFoundError(f"no model cards in {settings.models_dir}")
    return max(candidates, key=lambda b: (*headline_macro_f1(settings, b), -candidates.index(b)))


def resolve_backend(settings: Settings) -> str:
    """The backend that `settings.classifier` names, with `default` resolved."""
    return default_backend(settings) if settings.classifier == "default" else settings.classifier


def ensemble_weights(card: dict[str, Any]) -> list[float] | None:
    """The ensemble card's member weights (its members' order), None for a plain mean."""
    weights = card.get("weights")
    return [float(w) for w in weights] if weights else None


def ensemble_temperature(card: dict[str, Any]) -> float:
    """The ensemble's own calibration temperature (1.0 when its card has none)."""
    return float(card.get("calibration", {}).get("temperature", 1.0))


def load_classifier(settings: Settings, backend: str | None = None) -> Classifier:
    """Load a backend once (at start-up); ONNX sessions are reused for every request."""
    name = backend or resolve_backend(settings)
    if name == "ensemble":
        card = _ensemble_card(settings) or {}
        members = ensemble_member_cards(settings, card)
        if stale := _stale_members(settings, card):
            raise ValueError(f"{ENSEMBLE_CARD} was fitted with other weights of {stale}")
        return EnsembleClassifier(
            [OnnxClassifier.from_card_path(member, settings.onnx_threads) for member in members],
            temperature=ensemble_temperature(card),
            weights=ensemble_weights(card),
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
