"""Export a torch classifier to ONNX (raw logits, dynamic batch) and check it against torch.

With `with_features=True` the graph has a second output, `features`: the globally average-pooled
penultimate activations that feed the classification head (1280-d for EfficientNet-Lite0). The
gate's feature-space out-of-distribution score reads them from the same session run. With
`tapped=True` they are the multi-layer gate features instead (`layer_taps`: the pooled last
layer followed by tapped blocks' channel means and standard deviations).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from service.training.layer_taps import TappedFeatures

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
FEATURES_NAME = "features"


class OnnxParityError(RuntimeError):
    """The exported graph does not reproduce the torch model's logits."""


class LogitsAndFeatures(nn.Module):
    """(logits, pooled features) of an EfficientNet-style model, in one forward pass.

    Needs the model's `extract_features`, `_avg_pooling`, `_dropout` and `_fc`: the same path
    as its own `forward`, so in eval mode (dropout is the identity) the logits are unchanged.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        pooled = m.get_submodule("_avg_pooling")(m.extract_features(images))  # type: ignore[operator]
        features = pooled.flatten(1)
        logits = m.get_submodule("_fc")(m.get_submodule("_dropout")(features))
        return logits, features


class FlipAveraged(nn.Module):
    """Flip test-time augmentation inside the graph: the mean of the logits of the image and of
    its mirror image; the features (when the wrapped graph has them) are the plain image's."""

    def __init__(self, graph: nn.Module, with_features: bool) -> None:
        super().__init__()
        self.graph, self.with_features = graph, with_features

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        plain, mirrored = self.graph(images), self.graph(torch.flip(images, dims=[3]))
        if not self.with_features:
            averaged: torch.Tensor = (plain + mirrored) / 2
            return averaged
        return (plain[0] + mirrored[0]) / 2, plain[1]


def serving_graph(
    model: nn.Module, with_features: bool, flip_tta: bool, tapped: bool = False
) -> nn.Module:
    """What the ONNX file computes: the model, with features (the pooled last layer, or with
    `tapped` the multi-layer gate features of `layer_taps`) and/or flip averaging."""
    graph: nn.Module = model
    if with_features:
        graph = (TappedFeatures(model) if tapped else LogitsAndFeatures(model)).eval()
    return FlipAveraged(graph, with_features).eval() if flip_tta else graph


def export_onnx(
    model: nn.Module,
    path: Path,
    imgsz: int,
    with_features: bool = False,
    flip_tta: bool = False,
    tapped: bool = False,
) -> None:
    """Write `model` (eval mode, NCHW float input) as ONNX with a dynamic batch axis.

    Output 0 is always `logits`; `with_features` adds output 1, `features` (see module doc);
    `flip_tta` averages the logits of each image and its mirror image (`FlipAveraged`);
    `tapped` makes the features the multi-layer ones (`layer_taps.tapped_forward`).
    """
    model.eval()
    graph = serving_graph(model, with_features, flip_tta, tapped)
    outputs = [OUTPUT_NAME, FEATURES_NAME] if with_features else [OUTPUT_NAME]
    dummy = torch.zeros(2, 3, imgsz, imgsz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # The exporter notes it cannot constant-fold the strided Slice of "same" padding: benign.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            graph,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
        )


def onnx_parity(
    model: nn.Module,
    path: Path,
    images: torch.Tensor,
    tolerance: float = 1e-4,
    flip_tta: bool = False,
    tapped: bool | None = None,
) -> float:
    """Max |torch − onnxruntime| over the logits of `images` — and, with `tapped` set (False:
    pooled, True: multi-layer), over the `features` output too; raises above `tolerance`."""
    model.eval()
    with_features = tapped is not None
    graph = serving_graph(model, with_features, flip_tta, bool(tapped))
    with torch.no_grad():
        out = graph(images.contiguous())
    expected = [t.numpy() for t in out] if with_features else [out.numpy()]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [OUTPUT_NAME, FEATURES_NAME][: len(expected)]
    actual = session.run(names, {INPUT_NAME: images.numpy().astype(np.float32)})
    diff = max(float(np.max(np.abs(e - a))) for e, a in zip(expected, actual, strict=True))
    if diff > tolerance:
        raise OnnxParityError(f"{path.name}: ONNX differs from torch by {diff:.2e} > {tolerance}")
    return diff
