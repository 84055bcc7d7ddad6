"""Export a torch classifier to ONNX (raw logits, dynamic batch) and check it against torch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


class OnnxParityError(RuntimeError):
    """The exported graph does not reproduce the torch model's logits."""


def export_onnx(model: nn.Module, path: Path, imgsz: int) -> None:
    """Write `model` (eval mode, NCHW float input) as ONNX with a dynamic batch axis."""
    model.eval()
    dummy = torch.zeros(2, 3, imgsz, imgsz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # The exporter notes it cannot constant-fold the strided Slice of "same" padding: benign.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def onnx_parity(
    model: nn.Module, path: Path, images: torch.Tensor, tolerance: float = 1e-4
) -> float:
    """Max |torch − onnxruntime| over the logits of `images`; raises above `tolerance`."""
    model.eval()
    with torch.no_grad():
        expected = model(images.contiguous()).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    actual = session.run(None, {INPUT_NAME: images.numpy().astype(np.float32)})[0]
    diff = float(np.max(np.abs(expected - actual)))
    if diff > tolerance:
        raise OnnxParityError(f"{path.name}: ONNX differs from torch by {diff:.2e} > {tolerance}")
    return diff
