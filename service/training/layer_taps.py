"""Gate features from several depths of an EfficientNet in one forward pass.

The pooled last layer alone does not tell a photo of teeth or an endoscopy frame from skin (out
of fold they sit at the 87th–99th percentile of skin photos' distances). Earlier blocks see
texture and colour statistics that differ more (Lee et al. 2018 combine layers as well). The
gate's feature vector is therefore `[pooled last layer | per tapped block: channel means |
channel standard deviations]`; `layout` names the column range of every part, and the
`pipeline.layered_distance` artefact scores each part on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: EfficientNet-Lite0 blocks whose outputs are tapped (24, 80, 112, 192 and 320 channels): the
#: last block of the 24-channel stage, the first of the 80-, 112- and 192-channel stages, and
#: the last block (`default_taps` finds the same places in the wider, deeper Lite1/Lite2).
TAPS = (2, 5, 8, 11, 15)
LAST_LAYER = "last_layer"


def default_taps(model: nn.Module) -> tuple[int, ...]:
    """`TAPS` located by stage (a run of blocks with one output width), for any EfficientNet-Lite
    width and depth: the last block of stage 2, the first of stages 4, 5 and 6, the last block."""
    widths = []
    for block in model.get_submodule("_blocks").children():
        norm = block.get_submodule("_bn2")
        assert isinstance(norm, nn.BatchNorm2d)
        widths.append(norm.num_features)
    starts = [i for i, w in enumerate(widths) if i == 0 or w != widths[i - 1]]
    if len(starts) < 7:
        raise ValueError(f"expected 7 stages of blocks, found {len(starts)}: {widths}")
    return (starts[2] - 1, starts[3], starts[4], starts[5], len(widths) - 1)


def tapped_forward(
    model: nn.Module, images: torch.Tensor, taps: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, gate features) of an EfficientNet-style model; the logits are its own
    `forward`'s in eval mode (same path: features, pooling, dropout, head). Default taps:
    `default_taps(model)`."""
    taps = default_taps(model) if taps is None else taps
    blocks = list(model.get_submodule("_blocks").children())
    caught: dict[int, torch.Tensor] = {}
    hooks = [
        blocks[t].register_forward_hook(
            lambda _m, _i, out, t=t: caught.__setitem__(
                t, torch.cat([out.mean((2, 3)), out.std((2, 3))], 1)
            )
        )
        for t in taps
    ]
    try:
        maps = model.extract_features(images)  # type: ignore[operator]
    finally:
        for hook in hooks:
            hook.remove()
    pooled = model.get_submodule("_avg_pooling")(maps).flatten(1)
    logits = model.get_submodule("_fc")(model.get_submodule("_dropout")(pooled))
    return logits, torch.cat([pooled, *(caught[t] for t in taps)], 1)


def layout(model: nn.Module, taps: Sequence[int] | None = None) -> list[tuple[str, int, int]]:
    """(name, first column, end column) of every part of `tapped_forward`'s features."""
    taps = default_taps(model) if taps is None else taps
    blocks = list(model.get_submodule("_blocks").children())
    head = model.get_submodule("_fc")
    assert isinstance(head, nn.Linear)
    widths = [(LAST_LAYER, head.in_features)]
    for t in taps:
        norm = blocks[t].get_submodule("_bn2")
        assert isinstance(norm, nn.BatchNorm2d)
        widths.append((f"block{t}", 2 * norm.num_features))
    parts, start = [], 0
    for name, width in widths:
        parts.append((name, start, start + width))
        start += width
    return parts


class TappedFeatures(nn.Module):
    """`tapped_forward` as a module (for the ONNX export)."""

    def __init__(self, model: nn.Module, taps: Sequence[int] | None = None) -> None:
        super().__init__()
        self.model = model
        self.taps = default_taps(model) if taps is None else tuple(taps)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tapped_forward(self.model, images, self.taps)
