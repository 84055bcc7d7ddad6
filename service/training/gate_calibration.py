"""Calibrate the gate's OOD thresholds, then test the gate on skin6 val and on negatives.

`python -m service.training.gate_calibration [--backends yolo effnet ensemble] [--fit-on val]`

The score is the energy score when the model outputs logits. When the energy is constant
(a graph that ends in softmax), it is the max-logit score instead. Thresholds are percentiles
of in-distribution scores:
- `--fit-on train`: skin6 train. Val is then an untouched test, but a fine-tuned model scores
  its own training images too confidently, so its thresholds come out too strict. Measured on
  effnet: 8.3% of val rejected.
- `--fit-on val` (default): all of skin6 val. The false-rejection rate reported is then
  cross-fitted: val is split in two by near-duplicate group, each half is judged with
  thresholds fitted on the other half, and the counts are summed. This keeps the estimate
  honest.

For a backend whose graph outputs features (effnet, and the ensemble through its effnet
member) it also fits the feature-space distance (`service.pipeline.feature_ood`: class means and
a whitened shared covariance of the skin6 **train** features) into
`models/<model>.ood.npz`, and sets its two thresholds at upper percentiles of the distances of
the same in-distribution split as above, cross-fitted the same way.

It writes `models/gate.json` and prints the rejection rate with its reasons, the verdict and
scores of every negative (the feature distance with its val percentile), and the
false-acceptance count. The fitting lives in `gate_thresholds`, the judging in
`gate_evaluation`; this module runs them over the backends.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from service.evaluation.dataset import find_manifest, list_labelled_images
from service.images import load_rgb
from service.logging import configure_logging
from service.pipeline.backends import available_backends, load_classifier
from service.pipeline.domain import CLASSES
from service.pipeline.feature_ood import FeatureDistance
from service.pipeline.gate_config import GateConfig, QualityThresholds
from service.pipeline.ood import feature_source
from service.pipeline.quality import measure
from service.pipeline.screening import Screener
from service.settings import Settings
from service.training.gate_evaluation import (
    cross_fitted_rejections,
    print_rejections,
    rejections,
    report_negatives,
)
from service.training.gate_thresholds import (
    BATCH,
    calibrate,
    calibrate_features,
    choose_score,
    fit_artefact,
    passes,
)

__all__ = [
    "BATCH",
    "calibrate",
    "calibrate_features",
    "choose_score",
    "cross_fitted_rejections",
    "fit_artefact",
    "main",
    "passes",
    "print_rejections",
    "rejections",
    "report_negatives",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Calibrate every requested (default: every shipped) backend and write gate.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backends", nargs="*", default=None)
    parser.add_argument("--fit-on", choices=("val", "train"), default="val")
    parser.add_argument("--percentile", type=float, default=1.0)
    parser.add_argument("--soft-percentile", type=float, default=10.0)
    parser.add_argument("--feature-percentile", type=float, default=99.0)
    parser.add_argument("--feature-soft-percentile", type=float, default=90.0)
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    configure_logging("WARNING", json=False)
    settings = Settings()
    if args.models_dir is not None:
        settings = settings.model_copy(update={"models_dir": args.models_dir})
    data = settings.shared_dir / "data" / "skin6"
    val = list_labelled_images(data / "val", CLASSES, find_manifest(data))
    val_paths = [item.path for item in val]
    folds = [int(hashlib.sha256(item.group.encode()).hexdigest(), 16) % 2 for item in val]
    measurements = [measure(load_rgb(path)) for path in val_paths]
    quality = QualityThresholds()  # the documented defaults; operators may edit gate.json
    previous = GateConfig.load(settings.models_dir)
    config = GateConfig(quality, previous.ood, previous.features, settings.models_dir)
    skin = load_rgb(next(p for p in val_paths if p.parent.name == "Acne"))
    artefacts: dict[str, tuple[str, str]] = {}  # per feature model sha256, fitted once per run
    false_accepts = 0
    for backend in args.backends or available_backends(settings):
        classifier = load_classifier(settings, backend)
        val_pass = passes(classifier, val_paths)
        if args.fit_on == "val":
            fit_pass = val_pass
        else:
            train = list_labelled_images(data / "train", CLASSES)
            fit_pass = passes(classifier, [item.path for item in train])
        fitted_on = f"skin6 {args.fit_on}"
        entry = calibrate(classifier, fit_pass, args.percentile, args.soft_percentile, fitted_on)
        print(f"{backend}: {entry}")
        features = dict(config.features)
        feature, val_distances = features.pop(backend, None), None
        source = feature_source(classifier)
        if source is not None and fit_pass.features is not None:
            if source.info.sha256 not in artefacts:
                artefacts[source.info.sha256] = fit_artefact(source, data, settings.models_dir)
            artefact = artefacts[source.info.sha256]
            distance = FeatureDistance.load(settings.models_dir / artefact[0])
            percentiles = (args.feature_percentile, args.feature_soft_percentile)
            fit_distances = distance.score(fit_pass.features)
            feature = calibrate_features(
                classifier,
                source,
                artefact,
                fit_distances,
                percentiles,
                f"class means and covariance: skin6 train; thresholds: {fitted_on}",
            )
            features[backend] = feature
            assert val_pass.features is not None
            val_distances = distance.score(val_pass.features)
            print(f"{backend}: {feature}")
        config = replace(config, ood={**config.ood, backend: entry}, features=features)
        scores = val_pass.score(entry.score)
        if args.fit_on == "val":
            reasons = cross_fitted_rejections(
                measurements, scores, folds, entry, quality, val_distances, feature
            )
            print_rejections("val (cross-fitted)", reasons)
        else:
            judged = rejections(measurements, scores, quality, entry, val_distances, feature)
            print_rejections("val", judged)
        screener = Screener(
            classifier, config, settings.inconclusive_below, settings.inconclusive_margin
        )
        false_accepts += report_negatives(screener, skin, settings.shared_dir, val_distances)
    print(f"wrote {config.save(settings.models_dir)}")
    return 1 if false_accepts else 0


if __name__ == "__main__":
    raise SystemExit(main())
