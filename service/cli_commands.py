"""Implementations of the CLI sub-commands that use the serving stack (no torch needed)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from service.evaluation.dataset import find_manifest, list_labelled_images
from service.evaluation.metrics import classification_metrics, group_metrics
from service.intake.images import ImageLimits, decode_image, load_rgb
from service.pipeline.backends import available_backends, load_screener, resolve_backend
from service.pipeline.report_json import classification_json
from service.settings import Settings


def classify_paths(settings: Settings, paths: list[str], as_json: bool) -> int:
    """One result per input (JSON lines with --json); exit 1 if any input failed."""
    screener = load_screener(settings, resolve_backend(settings))
    limits = ImageLimits(settings.max_image_pixels, settings.min_image_side)
    failed = 0
    for path in paths:
        try:
            image = decode_image(Path(path).read_bytes(), limits)
            _, classification = screener.screen(image.rgb)
            body: dict[str, Any] = {"path": path, **classification_json(classification)}
        except Exception as exc:
            failed += 1
            detail = getattr(exc, "detail", None) or type(exc).__name__
            body = {"path": path, "error": detail}
        if as_json:
            print(json.dumps(body, ensure_ascii=False))
        elif "error" in body:
            print(f"{path}: error: {body['error']}")
        elif body["status"] == "rejected":
            print(f"{path}: rejected ({', '.join(body['reasons'])})")
        else:
            print(f"{path}: {body['label']} {body['confidence']:.1%} [{body['status']}]")
    return 1 if failed else 0


def evaluate_dir(settings: Settings, folder: Path, backends: list[str]) -> dict[str, Any]:
    """Metrics per backend on a folder-per-class set, with gate outcome shares."""
    results: dict[str, Any] = {}
    for backend in backends or available_backends(settings):
        screener = load_screener(settings, backend)
        classes = screener.classifier.classes
        items = list_labelled_images(folder, classes, find_manifest(folder))
        probs, statuses = [], []
        for item in tqdm(items, desc=f"evaluate {backend}", unit="img", file=sys.stderr):
            gate, classification = screener.screen(load_rgb(item.path))
            probs.append([classification.probabilities[c] for c in classes])
            statuses.append(gate.status)
        p = np.asarray(probs, dtype=np.float64)
        y = np.asarray([i.label for i in items], dtype=np.int64)
        metrics = classification_metrics(p, y, classes)
        n = max(len(items), 1)
        metrics["share_inconclusive"] = round(statuses.count("inconclusive") / n, 4)
        metrics["share_rejected"] = round(statuses.count("rejected") / n, 4)
        by_group = group_metrics(p, y, [i.group for i in items], classes)
        by_group.pop("per_group")
        metrics["by_photo_group"] = by_group
        results[backend] = metrics
    return results


def diagnose_file(settings: Settings, image_path: Path, out: Path, fields: dict[str, str]) -> int:
    """Run the full pipeline on one file, print progress, write the PDF."""
    from service.api.uploads import Upload, case_from_upload
    from service.bootstrap import build_services
    from service.pipeline import events as ev
    from service.pipeline.case import MemorySink
    from service.pipeline.run import run_case

    data = image_path.read_bytes()
    media_type = "application/dicom" if data[128:132] == b"DICM" else "application/octet-stream"
    case = case_from_upload(Upload(data, media_type, fields), settings, None)
    services = build_services(settings, packagers=[])
    sink = MemorySink()

    async def drive() -> int:
        async for event in run_case(services.deps, case, sink):
            if event.name == ev.REPORT_DELTA:
                continue
            if event.name == ev.ERROR:
                print(f"error: {event.data.get('detail')}", file=sys.stderr)
                return 1
            label = event.data.get("label") or event.data.get("status") or ""
            print(f"[{event.name}] {label}", file=sys.stderr)
        return 0

    code = asyncio.run(drive())
    if code == 0:
        out.write_bytes(sink.items["pdf"][1])
        print(str(out))
    return code
