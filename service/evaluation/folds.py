"""Photo-group k-fold assignment, stratified by class (pure python + numpy).

Near-duplicate photos share a manifest `group`; a whole group always lands in one fold, so a
model is never scored on a crop or recolouring of a photo it trained on. Within each class the
groups are shuffled and dealt round-robin, so every fold holds about 1/k of each class's groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

DEFAULT_SEED = 20261202


def assign_folds(
    groups: Sequence[str], labels: Sequence[int], k: int, seed: int = DEFAULT_SEED
) -> npt.NDArray[np.int64]:
    """Fold index (0..k-1) per photo; a group takes the class of its first photo."""
    if k < 2:
        raise ValueError("k-fold cross-validation needs k >= 2")
    rng = np.random.default_rng(seed)
    group_label: dict[str, int] = {}
    for group, label in zip(groups, labels, strict=True):
        group_label.setdefault(group, int(label))
    fold_of: dict[str, int] = {}
    for label in sorted(set(group_label.values())):
        members = sorted(g for g, lbl in group_label.items() if lbl == label)
        rng.shuffle(members)
        offset = int(rng.integers(k))
        for i, group in enumerate(members):
            fold_of[group] = (i + offset) % k
    return np.asarray([fold_of[g] for g in groups], dtype=np.int64)
