"""Implementations of the CLI sub-commands that use the serving stack (no torch needed)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from service.bootstrap import build_services
from service.errors import error_from_problem
from service.evaluation.dataset import file_sha256, find_manifest, list_labelled_images
from service.evaluation.metrics import classification_metrics, group_metrics
from service.images import load_rgb
from service.intake.cases import Limits, case_from_fields
from service.pipeline import events as ev
from service.pipeline.backends import (
    ENSEMBLE_CARD,
    available_backends,
    card_path,
    load_screener,
)
from service.settings import Settings


def classify_paths(settings: Settings, paths: list[str], as_json: bool) -> int:
    """One result per input (JSON lines with --json); exit 1 if any input failed."""
    services = build_services(settings, outputs=[], store_path=":memory:")

    async def one(path: str) -> dict[str, Any]:
        intake = case_from_fields(
            _read(Path(path)), _media_type(Path(path)), {}, None, services.limits
        )
        submission = await services.jobs.submit(
            intake.case, kind="classify", mode="classify", image=intake.rgb
        )
        result = await submission.result()
        if result.error is not None or result.classification is None:
            raise error_from_problem(result.error or {})
        return {"path": path, **result.classification}

    async def drive() -> int:
        failed = 0
        for path in paths:
            try:
                body = await one(path)
            except Exception as exc:
                failed += 1
                body = {"path": path, "error": getattr(exc, "detail", None) or type(exc).__name__}
            _print_classification(body, as_json)
        await services.close()
        return 1 if failed else 0

    return asyncio.run(drive())


def _print_classification(body: dict[str, Any], as_json: bool) -> None:
    path = body["path"]
    if as_json:
        print(json.dumps(body, ensure_ascii=False))
    elif "error" in body:
        print(f"{path}: error: {body['error']}")
    elif body["status"] == "rejected":
        print(f"{path}: rejected ({', '.join(body['reasons'])})")
    else:
        print(f"{path}: {body['label']} {body['confidence']:.1%} [{body['status']}]")


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _media_type(path: Path) -> str:
    """DICOM by its magic, else an image whose format the decoder finds out."""
    with path.open("rb") as handle:
        head = handle.read(132)
    return "application/dicom" if head[128:132] == b"DICM" else "application/octet-stream"


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
        if trained_on(_card_file(settings, backend), folder):
            metrics["in_sample"] = (
                "this model was trained on these photos: see its card's cross-validated figures"
            )
        results[backend] = metrics
    return results


def _card_file(settings: Settings, backend: str) -> Path | None:
    if backend == "ensemble":
        return settings.models_dir / ENSEMBLE_CARD
    return card_path(settings, backend) if backend in ("yolo", "effnet") else None


def trained_on(card: Path | None, folder: Path) -> bool:
    """Whether the card (or, for an ensemble, a member's card) lists `folder` — a split of the
    same manifest — as training data."""
    manifest = find_manifest(folder)
    if card is None or not card.is_file() or manifest is None:
        return False
    raw = json.loads(card.read_text(encoding="utf-8"))
    members = [card.parent / str(m["card"]) for m in raw.get("members", []) if "card" in m]
    if any(trained_on(member, folder) for member in members):
        return True
    data = raw.get("training", {}).get("data", {})
    same = data.get("manifest_sha256") == file_sha256(manifest)
    return same and folder.name in data.get("splits", [])


def diagnose_file(settings: Settings, image_path: Path, out: Path, fields: dict[str, str]) -> int:
    """Run the full pipeline on one file, print progress, write the PDF (nothing else is kept:
    the job store is in memory)."""
    limits = Limits.from_settings(settings)
    intake = case_from_fields(_read(image_path), _media_type(image_path), fields, None, limits)
    services = build_services(settings, outputs=[], store_path=":memory:")

    async def drive() -> int:
        await services.start()  # the in-process worker runs the case
        jobs = services.jobs
        submission = await jobs.submit(intake.case, kind="diagnose", image=intake.rgb)
        code = 0
        async for event in jobs.follow(submission.job_id):
            if event is None or event.name == ev.REPORT_DELTA:
                continue
            if event.name == ev.ERROR:
                print(f"error: {event.data.get('detail')}", file=sys.stderr)
                code = 1
                continue
            label = event.data.get("label") or event.data.get("status") or ""
            print(f"[{event.name}] {label}", file=sys.stderr)
        if code == 0:
            stored = await services.store.get_artifact(submission.job_id, "pdf")
            assert stored is not None  # a completed diagnose run always has its PDF
            out.write_bytes(stored[1])
            print(str(out))
        await services.close()
        return code

    return asyncio.run(drive())


def run_worker(settings: Settings, concurrency: int, metrics_port: int = 0) -> int:
    """`skinscreen worker`: claim and run cases until SIGTERM/SIGINT, then stop claiming,
    finish or release the running ones within `shutdown_grace_s`, and exit 0."""
    from service.bootstrap import new_worker
    from service.logging import configure_logging
    from service.tracing import configure_tracing

    configure_logging(settings.log_level, settings.log_json)
    configure_tracing(settings.otlp_endpoint)
    services = build_services(settings, with_worker=False)
    if metrics_port:
        from service.metrics import serve_metrics

        serve_metrics(settings.host, metrics_port)
    worker = new_worker(settings, services.store, services.jobs.deps, services.limits, concurrency)

    async def drive() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await worker.start()
        await stop.wait()
        await worker.stop(settings.shutdown_grace_s)
        await services.close()
        return 0

    return asyncio.run(drive())
