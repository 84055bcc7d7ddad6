"""Training smoke test: a handful of skin6 images, one epoch, tiny size; export and card work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.pipeline.classifier import OnnxClassifier


@pytest.mark.slow
def test_train_export_and_card(skin6_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ultralytics", reason="training needs the `train` extra")
    from service.training.yolo import YoloRecipe, train_yolo
    from tests.support.training_data import tiny_dataset

    data = tiny_dataset(skin6_dir, tmp_path / "data")  # 2 train + 2 val photos per class
    recipe = YoloRecipe(epochs=1, imgsz=32, batch=4)
    out = tmp_path / "models"
    card = train_yolo(data, out, "smoke", recipe, tmp_path / "work", version="0.0.1")

    assert (out / "smoke.onnx").is_file() and (out / "smoke.pt").is_file()
    on_disk = json.loads((out / "smoke.json").read_text())
    assert on_disk == json.loads(json.dumps(card))
    assert on_disk["classes"] == ["Acne", "Carcinoma", "Eczema", "Keratosis", "Milia", "Rosacea"]
    assert on_disk["imgsz"] == 32
    assert on_disk["training"]["recipe"]["epochs"] == 1
    assert on_disk["training"]["data"]["files_sha256"]
    val = on_disk["metrics"]["val"]
    assert val["n"] == 12 and set(val["per_class"]) == set(on_disk["classes"])
    assert len(val["confusion_matrix"]["rows_true_cols_pred"]) == 6
    assert on_disk["metrics"]["val_by_photo_group"]["groups"] == 12
    assert on_disk["calibration"]["temperature"] > 0
    classifier = OnnxClassifier.from_card_path(out / "smoke.json")
    assert classifier.info.name == "smoke"


def test_distillation_loss_matches_soft_targets_and_never_pickles_the_teacher() -> None:
    torch = pytest.importorskip("torch", reason="training needs the `train` extra")
    import pickle

    from service.training.yolo_distil import DistillationLoss, DistilRecipe

    class Fixed(torch.nn.Module):
        def __init__(self, logits: torch.Tensor) -> None:
            super().__init__()
            self.logits = logits

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.logits

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    batch = {"img": torch.rand(2, 3, 8, 8), "cls": torch.tensor([0, 1])}
    only_soft = DistillationLoss(Fixed(logits), DistilRecipe(temperature=2.0, alpha=1.0))
    assert float(only_soft(logits, batch)[0]) == pytest.approx(0.0, abs=1e-6)
    wrong = DistillationLoss(Fixed(-logits), DistilRecipe(temperature=2.0, alpha=1.0))
    assert float(wrong(logits, batch)[0]) > 0.5
    mixed = DistillationLoss(Fixed(logits), DistilRecipe(temperature=2.0, alpha=0.7))
    hard = torch.nn.functional.cross_entropy(logits, batch["cls"])
    assert float(mixed(logits, batch)[0]) == pytest.approx(0.3 * float(hard), rel=1e-5)
    copy = pickle.loads(pickle.dumps(mixed))
    assert copy.teacher is None  # checkpoints carry no teacher weights ...
    assert float(copy((logits, logits), batch)[0]) == pytest.approx(float(hard))  # ... only CE


def test_the_onnx_teacher_gives_the_torch_teachers_logits_and_is_never_pickled(
    tmp_path: Path,
) -> None:
    torch = pytest.importorskip("torch", reason="training needs the `train` extra")
    import pickle

    from service.training.effnet_model import EffnetRecipe, build_model
    from service.training.yolo_distil import DistillationLoss, DistilRecipe, OnnxTeacher

    torch.manual_seed(0)
    net = build_model(6, EffnetRecipe(imgsz=64)).eval()
    teacher = OnnxTeacher(net, tmp_path / "teacher.onnx", 64)
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        expected = net(images)
    got = teacher(images)
    assert got.shape == (3, 6) and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=1e-3)
    assert not torch.allclose(got, torch.zeros_like(got))  # a real forward pass, not a constant
    loss = DistillationLoss(teacher, DistilRecipe(temperature=2.0, alpha=1.0))
    batch = {"img": torch.rand(3, 3, 64, 64), "cls": torch.tensor([0, 1, 2])}
    with torch.no_grad():
        student = net((batch["img"] - loss.mean) / loss.std)
    assert float(loss(student, batch)[0]) == pytest.approx(0.0, abs=1e-4)  # student == teacher
    assert pickle.loads(pickle.dumps(loss)).teacher is None


@pytest.mark.slow
def test_distilled_student_trains_and_ships_as_plain_ultralytics(
    skin6_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("ultralytics", reason="training needs the `train` extra")
    torch = pytest.importorskip("torch", reason="training needs the `train` extra")
    from ultralytics import YOLO  # type: ignore[attr-defined]

    from service.training.effnet_model import EffnetRecipe, build_model
    from service.training.yolo import YoloRecipe, train_yolo
    from service.training.yolo_distil import DistilRecipe
    from tests.support.training_data import tiny_dataset

    data = tiny_dataset(skin6_dir, tmp_path / "data")  # 2 train + 2 val photos per class

    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.calls = build_model(6, EffnetRecipe(imgsz=32)).eval(), 0

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            assert images.shape[1:] == (3, 32, 32) and images.min() < 0  # ImageNet-normalised
            return self.net(images)

    teacher = Counting()
    out = tmp_path / "models"
    card = train_yolo(
        data,
        out,
        "student",
        YoloRecipe(epochs=1, imgsz=32, batch=4),
        tmp_path / "work",
        version="0.0.1",
        teacher=teacher,
        distil=DistilRecipe(temperature=3.0, alpha=0.5),
        keep="last",
    )
    assert teacher.calls >= 3  # 12 photos, batch 4: the teacher saw every training batch
    recipe = card["training"]["recipe"]
    assert recipe["distillation"] == {"temperature": 3.0, "alpha": 0.5}
    assert recipe["weights"] == "last"
    state = torch.load(out / "student.pt", map_location="cpu", weights_only=False)
    assert getattr(state["model"] or state["ema"], "criterion", None) is None
    assert YOLO(str(out / "student.pt"), task="classify").names[0] == "Acne"
    assert OnnxClassifier.from_card_path(out / "student.json").info.name == "student"
