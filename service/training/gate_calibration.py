"""Calibrate the gate's OOD thresholds on skin6 train, then test the gate on val and negatives.

`python -m service.training.gate_calibration [--backends yolo effnet ensemble]`

Thresholds are set on **train** images only, so val stays an honest test of false rejections.
The score is the energy score when the model outputs logits, or the max-logit score when
the energy is constant, which happens when the graph outputs probabilities. It writes
`models/gate.json` and prints: the val false-rejection rate per reason, the verdict on every
negative, and the false-acceptance count.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from service.evaluation.dataset import list_labelled_images
from service.evaluation.negatives import dicom_negatives, generated_negatives
from service.intake.images import load_rgb
from service.logging import configure_logging
from service.pipeline.backends import available_backends, load_classifier
from service.pipeline.classifier import Classifier, FloatArray
from service.pipeline.domain import CLASSES
from service.pipeline.gate_config import GateConfig, OodScore, OodThreshold
from service.pipeline.ood import ModelPass, forward
from service.pipeline.screening import Screener
from service.settings import Settings

BATCH = 32


def passes(classifier: Classifier, paths: Sequence[Path]) -> ModelPass:
    """One batched model pass over image files."""
    parts = [
        forward(classifier, [load_rgb(p) for p in paths[i : i + BATCH]])
        for i in range(0, len(paths), BATCH)
    ]
    return ModelPass(
        np.concatenate([p.probabilities for p in parts]),
        np.concatenate([p.energy for p in parts]),
        np.concatenate([p.max_logit for p in parts]),
    )


def choose_score(train: ModelPass) -> OodScore:
    """Energy unless it is constant (a graph that ends in softmax), then max-logit."""
    return "energy" if float(np.std(train.energy)) > 1e-6 else "max_logit"


def calibrate(
    classifier: Classifier, train: ModelPass, percentile: float, soft_percentile: float
) -> OodThreshold:
    """Thresholds at the given percentiles of the train scores."""
    kind = choose_score(train)
    scores: FloatArray = train.score(kind)
    return OodThreshold(
        score=kind,
        threshold=round(float(np.percentile(scores, percentile)), 5),
        soft_threshold=round(float(np.percentile(scores, soft_percentile)), 5),
        model_name=classifier.info.name,
        model_sha256=classifier.info.sha256,
        percentile=percentile,
        soft_percentile=soft_percentile,
    )


def report(screener: Screener, val: Sequence[Path], shared: Path) -> int:
    """Print val false rejections and the verdict on every negative; return false accepts."""
    verdicts = [gate for paths in _chunks(val) for gate, _ in screener.screen_batch(paths)]
    rejected = [g for g in verdicts if g.status == "rejected"]
    reasons = Counter(r for g in rejected for r in g.reasons)
    statuses = Counter(g.status for g in verdicts)
    print(f"  val: {len(rejected)}/{len(val)} rejected = {100 * len(rejected) / len(val):.2f}%")
    print(f"  val statuses {dict(statuses)}; rejection reasons {dict(reasons)}")
    skin = load_rgb(next(p for p in val if p.parent.name == "Acne"))
    negatives = [*dicom_negatives(shared / "dicom"), *generated_negatives(skin).items()]
    accepted = 0
    for name, image in negatives:
        gate, classification = screener.screen(image)
        accepted += gate.status != "rejected"
        score = gate.measurements.get("ood_score", float("nan"))
        print(
            f"  {name:24s} {gate.status:12s} {','.join(gate.reasons):40s} "
            f"skin={gate.measurements['skin_fraction']:.2f} ood={score:.3f} "
            f"top={classification.label}:{classification.confidence:.2f}"
        )
    print(f"  false acceptances: {accepted}/{len(negatives)}")
    return accepted


def _chunks(paths: Sequence[Path]) -> list[list[Image.Image]]:
    return [[load_rgb(p) for p in paths[i : i + BATCH]] for i in range(0, len(paths), BATCH)]


def main(argv: Sequence[str] | None = None) -> int:
    """Calibrate every requested (default: every shipped) backend and write gate.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backends", nargs="*", default=None)
    parser.add_argument("--percentile", type=float, default=1.0)
    parser.add_argument("--soft-percentile", type=float, default=10.0)
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    configure_logging("WARNING", json=False)
    settings = Settings()
    if args.models_dir is not None:
        settings = settings.model_copy(update={"models_dir": args.models_dir})
    data = settings.shared_dir / "data" / "skin6"
    train = [item.path for item in list_labelled_images(data / "train", CLASSES)]
    val = [item.path for item in list_labelled_images(data / "val", CLASSES)]
    # Quality thresholds are the documented defaults; OOD entries of other backends are kept.
    config = GateConfig(ood=GateConfig.load(settings.models_dir).ood)
    false_accepts = 0
    for backend in args.backends or available_backends(settings):
        classifier = load_classifier(settings, backend)
        entry = calibrate(
            classifier, passes(classifier, train), args.percentile, args.soft_percentile
        )
        config = GateConfig(quality=config.quality, ood={**config.ood, backend: entry})
        print(f"{backend}: {entry}")
        screener = Screener(
            classifier, config, settings.inconclusive_below, settings.inconclusive_margin
        )
        false_accepts += report(screener, val, settings.shared_dir)
    print(f"wrote {config.save(settings.models_dir)}")
    return 1 if false_accepts else 0


if __name__ == "__main__":
    raise SystemExit(main())
