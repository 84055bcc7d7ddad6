"""The CLI's evaluate and diagnose commands, run as real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_evaluate_reports_metrics_per_backend(skin6_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "val"
    for class_dir in sorted((skin6_dir / "val").iterdir()):
        (folder / class_dir.name).mkdir(parents=True)
        for image in sorted(class_dir.glob("*.jpg"))[:2]:
            shutil.copyfile(image, folder / class_dir.name / image.name)
    shutil.copyfile(skin6_dir / "manifest.csv", tmp_path / "manifest.csv")  # the same data set
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "evaluate",
            str(folder),
            "--backend",
            "effnet",
            "--backend",
            "yolo",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    results = json.loads(out.stdout)
    assert set(results) == {"effnet", "yolo"}
    for metrics in results.values():
        assert metrics["n"] == 12
        assert 0 <= metrics["top1"] <= 1 and 0 <= metrics["macro_f1"] <= 1
        assert {
            "ece_15",
            "per_class",
            "confusion_matrix",
            "share_inconclusive",
            "share_rejected",
            "by_photo_group",
        } <= set(metrics)
    assert "evaluate effnet" in out.stderr  # the progress bar
    # the v2 EfficientNet trained on train + val: its figures here are flagged as in-sample
    assert "in_sample" in results["effnet"] and "in_sample" not in results["yolo"]


def test_diagnose_writes_a_pdf(skin_jpeg: bytes, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(skin_jpeg)
    pdf = tmp_path / "report.pdf"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "diagnose",
            str(photo),
            "--lang",
            "ko",
            "--out",
            str(pdf),
            "--name",
            "김민준",
            "--age",
            "54",
            "--sex",
            "male",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SKINSCREEN_DATA_DIR": str(tmp_path / "data")},
    )
    assert out.returncode == 0, out.stderr
    assert pdf.read_bytes().startswith(b"%PDF")
    assert "[completed]" in out.stderr
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, check=True).stdout
    assert "김민준" in text.decode()
    assert "김민준" not in out.stderr  # progress lines carry no patient data
