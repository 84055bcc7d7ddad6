"""Decision thresholds fitted per model weights (`models/triage.json`): the malignancy threshold
of the triage policy and the split-conformal threshold of the prediction sets.

`python -m service.training.triage_threshold` fits it on photo-group cross-validated
predictions (see that module); the file records, per backend, the weights' sha256, the
threshold and the figures it was chosen on. A model without a fitted threshold (other weights,
a test model) gets the lowest fitted threshold on file — the most cautious one — or, without any
file, `UNFITTED_THRESHOLD`, and a warning is logged: an unfitted model must over-refer, never
under-refer.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.logging import get_logger
from service.pipeline.domain import ModelInfo

log = get_logger(__name__)

TRIAGE_FILE = "triage.json"
#: Cautious threshold for a model nobody fitted one for (no `triage.json` at all).
UNFITTED_THRESHOLD = 0.05


@dataclass(frozen=True)
class MalignancyThreshold:
    """P(Carcinoma) at or above which a result is referred urgently, for one model."""

    model_name: str
    model_sha256: str
    threshold: float
    #: Sensitivity the threshold was chosen for, on the photos it was fitted on.
    target_sensitivity: float
    fitted_on: str
    #: Cross-validated figures (photo-group folds) of the fitting procedure.
    cross_validated: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ConformalThreshold:
    """q̂ of the split-conformal prediction sets of one model (`pipeline.conformal`)."""

    model_name: str
    model_sha256: str
    threshold: float
    #: 1 − α: the share of photos whose true class the set should hold.
    coverage_target: float
    fitted_on: str
    #: Cross-fitted coverage and set sizes (photo-group folds).
    cross_validated: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TriageConfig:
    """Fitted malignancy and conformal thresholds, keyed by backend name."""

    thresholds: dict[str, MalignancyThreshold] = field(default_factory=dict)
    conformal: dict[str, ConformalThreshold] = field(default_factory=dict)

    def conformal_for(self, model: ModelInfo) -> float | None:
        """q̂ fitted for exactly these weights; None (no prediction sets) otherwise."""
        for entry in self.conformal.values():
            if entry.model_sha256 == model.sha256:
                return entry.threshold
        if self.conformal:  # fitted for other weights: say so, the sets are off for this model
            log.warning("triage.conformal_unfitted", model=model.name)
        return None

    def threshold_for(self, model: ModelInfo) -> float:
        """The threshold fitted for exactly these weights, else the most cautious one."""
        for entry in self.thresholds.values():
            if entry.model_sha256 == model.sha256:
                return entry.threshold
        fallback = min((e.threshold for e in self.thresholds.values()), default=None)
        log.warning("triage.threshold_unfitted", model=model.name)
        return UNFITTED_THRESHOLD if fallback is None else min(fallback, UNFITTED_THRESHOLD)

    def as_json(self) -> dict[str, Any]:
        """JSON document form (the inverse of `from_json`)."""
        return {
            "malignancy": {
                name: {
                    "model_name": e.model_name,
                    "model_sha256": e.model_sha256,
                    "threshold": e.threshold,
                    "target_sensitivity": e.target_sensitivity,
                    "fitted_on": e.fitted_on,
                    "cross_validated": e.cross_validated,
                }
                for name, e in self.thresholds.items()
            },
            "conformal": {name: asdict(e) for name, e in self.conformal.items()},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TriageConfig:
        """Parse a document written by `as_json`."""
        entries = doc.get("malignancy", {})
        conformal = doc.get("conformal", {})
        return cls(
            {name: MalignancyThreshold(**entry) for name, entry in entries.items()},
            {name: ConformalThreshold(**entry) for name, entry in conformal.items()},
        )

    @classmethod
    def load(cls, models_dir: Path) -> TriageConfig:
        """`models_dir/triage.json`, or no fitted thresholds (with a warning) without it."""
        path = models_dir / TRIAGE_FILE
        if not path.is_file():
            log.warning("triage.config_missing", path=str(path))
            return cls()
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def save(self, models_dir: Path) -> Path:
        """Write `models_dir/triage.json`."""
        path = models_dir / TRIAGE_FILE
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n", encoding="utf-8")
        return path
