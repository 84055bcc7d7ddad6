"""EfficientNet-Lite0 fine-tune smoke test: a few skin6 images, one epoch, 64 px, real export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the `train` extra")
onnx = pytest.importorskip("onnx", reason="training needs the `train` extra")
pytest.importorskip("efficientnet_lite_pytorch", reason="training needs the `train` extra")

from service.images import load_rgb  # noqa: E402
from service.pipeline.classifier import OnnxClassifier  # noqa: E402
from service.training.effnet import (  # noqa: E402
    IMAGENET_MEAN,
    build_model,
    cache_eval_images,
    pretrained_weights_path,
    train_effnet,
    train_transform,
)
from tests.support.training_data import CLASSES, TINY, tiny_dataset  # noqa: E402


@pytest.fixture(scope="module")
def shipped(skin6_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("effnet")
    data = tiny_dataset(skin6_dir, root / "data")
    out = root / "models"
    card = train_effnet(data, out, "tiny-effnet", TINY, root / "work", version="0.0.1")
    return out, card


@pytest.mark.slow
def test_files_and_card(shipped: tuple[Path, dict[str, Any]]) -> None:
    out, card = shipped
    for suffix in ("pt", "onnx", "json"):
        assert (out / f"tiny-effnet.{suffix}").is_file()
    on_disk = json.loads((out / "tiny-effnet.json").read_text())
    assert on_disk == json.loads(json.dumps(card))
    assert on_disk["classes"] == CLASSES
    assert on_disk["imgsz"] == 64 and on_disk["output"] == "logits"
    assert on_disk["outputs"] == ["logits", "features"]
    assert on_disk["preprocess"]["mean"] == list(IMAGENET_MEAN)
    assert on_disk["weights"]["pt"] == "tiny-effnet.pt"
    assert on_disk["calibration"]["temperature"] > 0
    assert {"ece_15_before", "ece_15_after"} <= set(on_disk["calibration"])
    val = on_disk["metrics"]["val"]
    assert {"top1", "macro_f1", "ece_15", "per_class", "confusion_matrix"} <= set(val)
    assert val["n"] == 12 and set(val["per_class"]) == set(CLASSES)
    assert on_disk["metrics"]["val_by_photo_group"]["groups"] == 12
    training = on_disk["training"]
    assert training["recipe"]["epochs"] == 1 and training["recipe"]["optimizer"] == "AdamW"
    assert len(training["recipe"]["pretrained"]["sha256"]) == 64
    log = training["log"]
    assert [e["epoch"] for e in log["epochs"]] == [1] and log["best_epoch"] == 1
    assert log["stopped_epoch"] == 1 and "val" in log["selection_note"]
    assert 0.0 <= log["epochs"][0]["val_macro_f1"] <= 1.0
    assert log["onnx_max_abs_diff_vs_torch"] <= 1e-4


@pytest.mark.slow
def test_onnx_graph_has_dynamic_batch_and_opset(shipped: tuple[Path, dict[str, Any]]) -> None:
    out, _ = shipped
    model = onnx.load(str(out / "tiny-effnet.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    assert [o.name for o in model.graph.output] == ["logits", "features"]
    for output in model.graph.output:
        assert output.type.tensor_type.shape.dim[0].dim_param  # dynamic batch


@pytest.mark.slow
def test_serving_path_matches_torch_state_dict(
    shipped: tuple[Path, dict[str, Any]], skin6_val_images: dict[str, list[Path]]
) -> None:
    """The .pt reloaded in torch and the ONNX run by the service agree on real photos."""
    out, _ = shipped
    paths = [images[-1] for images in skin6_val_images.values()][:4]
    model = build_model(len(CLASSES), TINY)
    model.load_state_dict(torch.load(out / "tiny-effnet.pt"))
    model.eval()
    with torch.no_grad():
        expected = model(cache_eval_images(paths, TINY.imgsz)).double().numpy()
    classifier = OnnxClassifier.from_card_path(out / "tiny-effnet.json")
    actual, features = classifier.forward([load_rgb(p) for p in paths])
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    assert features is not None and features.shape == (len(paths), 1280)


@pytest.mark.slow
def test_frozen_stem_keeps_imagenet_weights(shipped: tuple[Path, dict[str, Any]]) -> None:
    out, _ = shipped
    tuned = torch.load(out / "tiny-effnet.pt")
    imagenet = torch.load(pretrained_weights_path())
    frozen_key = "_blocks.2._depthwise_conv.weight"  # inside the 3 frozen blocks
    tuned_key = "_blocks.10._depthwise_conv.weight"
    assert torch.equal(tuned["_conv_stem.weight"], imagenet["_conv_stem.weight"])
    assert torch.equal(tuned[frozen_key], imagenet[frozen_key])
    assert torch.equal(tuned["_bn0.running_mean"], imagenet["_bn0.running_mean"])
    assert not torch.equal(tuned[tuned_key], imagenet[tuned_key])
    assert tuned["_fc.weight"].shape == (len(CLASSES), 1280)


def test_eval_cache_is_the_serving_transform(skin6_val_images: dict[str, list[Path]]) -> None:
    path = skin6_val_images["Milia"][0]
    cached = cache_eval_images([path], 96)[0].numpy()
    card = {"imgsz": 96, "mean": IMAGENET_MEAN, "std": (0.229, 0.224, 0.225)}
    from service.pipeline.preprocess import classify_tensor

    served = classify_tensor(load_rgb(path), card["imgsz"], card["mean"], card["std"])
    np.testing.assert_array_equal(cached, served)


def test_train_transform_is_seeded_and_sized() -> None:
    image = torch.randint(0, 256, (3, 80, 100), dtype=torch.uint8)
    augment = train_transform(TINY)
    torch.manual_seed(7)
    first = augment(image)
    torch.manual_seed(7)
    again = augment(image)
    torch.manual_seed(8)
    other = augment(image)
    assert first.shape == (3, 64, 64) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
