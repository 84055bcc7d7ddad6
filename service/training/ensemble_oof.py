"""Fit the ensemble's weights on the members' out-of-fold predictions and judge it.

`python -m service.training.ensemble_oof models/cv/<yolo>.oof.npz \
    models/cv/<effnet>.oof.npz:ema+flip`

Each argument is an OOF file (same photos, same folds) and optionally the variant to use
(`last`, `ema`, `last+flip`, `ema+flip` for an EfficientNet CV; a YOLO student's holds only
`last`, the default). Prints the cross-fitted figures of the
ensemble and of each member, the weights fitted on all photos, and whether the ensemble beats
the best single member (only then may it become the default); writes
`models/cv/ensemble.cv.json`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from service.evaluation.cv_metrics import Oof
from service.evaluation.ensemble_cv import cross_fitted_ensemble
from service.pipeline.domain import CLASSES
from service.training.cv_fit import read_oof, variant_logits


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("members", nargs="+", help="OOF file[:variant], in the ensemble's order")
    parser.add_argument("--out", type=Path, default=Path("models/cv/ensemble.cv.json"))
    args = parser.parse_args(argv)
    logits, reference = [], None
    for spec in args.members:
        path, _, variant = spec.partition(":")
        arrays = read_oof(path)
        chosen = variant_logits(arrays, variant or "last", path)
        if reference is None:
            reference = arrays
        elif (
            not (reference["files"] == arrays["files"]).all()
            or not (reference["folds"] == arrays["folds"]).all()
        ):
            raise SystemExit(f"{path}: other photos or folds than {args.members[0]}")
        logits.append(chosen)
    assert reference is not None
    oof_view = Oof(
        logits[0],
        reference["labels"].astype(np.int64),
        [str(g) for g in reference["groups"]],
        reference["folds"].astype(np.int64),
    )
    result = cross_fitted_ensemble(logits, oof_view, CLASSES)
    result["members_order"] = list(args.members)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("weights", "temperature", "beats_best_single")}))
    print(
        f"ensemble macro-F1 {result['ensemble']['macro_f1']} {result['ensemble']['macro_f1_ci95']}"
    )
    for spec, member in zip(args.members, result["members"], strict=True):
        print(f"{spec}: macro-F1 {member['macro_f1']} {member['macro_f1_ci95']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
