"""PDF render time per language: `python benchmarks/bench_pdf.py [N]` prints medians in ms."""

from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.pipeline.domain import (
    CLASSES,
    REPORT_SECTIONS,
    Classification,
    GateOutcome,
    ModelInfo,
    Patient,
    Report,
    SourceImage,
)
from service.report.pdf import Attachment, PdfRenderer

NAMES = {"ko": "김민준", "en": "Jane Doe", "vi": "Nguyễn Thị Hoa"}
TEXT = "Papules and **comedones** on both cheeks.\n\n- closed comedones\n- a few pustules"


def sample_report(language: str) -> Report:
    """A typical one-page report with every section filled."""
    probabilities = dict.fromkeys(CLASSES, 0.05) | {"Acne": 0.75}
    return Report(
        case_id="bench-0001",
        language=language,
        patient=Patient(name=NAMES[language], age=34, sex="female"),
        history="itching for 3 weeks",
        source=SourceImage("image/jpeg", "ab" * 32, 1600, 1200),
        classification=Classification(probabilities, ModelInfo("yolov8n-cls", "1.0", "c0" * 32)),
        gate=GateOutcome("ok"),
        summary="Findings are most consistent with acne.",
        sections=dict.fromkeys(REPORT_SECTIONS, TEXT),
        narrative="",
        narrator=ModelInfo("knowledge", "1.0", "d0" * 32, kind="narrator"),
        generated_without_llm=True,
        urgent_referral=False,
        created_at="2025-03-04T14:05:00+00:00",
    )


def photo() -> Image.Image:
    """A real skin photo when ../shared is present, else a synthetic 1600x1200 gradient."""
    shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "skin6" / "val"
    found = sorted((shared / "Acne").glob("*.jpg"))[:1] if shared.is_dir() else []
    if found:
        return Image.open(found[0]).convert("RGB")
    return Image.linear_gradient("L").resize((1600, 1200)).convert("RGB")


def main(repeats: int = 15) -> None:
    """Render each language `repeats` times after one warm-up and print the medians."""
    started = time.perf_counter()
    renderer = PdfRenderer()
    print(f"PdfRenderer() init: {(time.perf_counter() - started) * 1000:.0f} ms")
    image = photo()
    heatmap = io.BytesIO()
    image.convert("L").save(heatmap, format="PNG")
    fhir = b'{"resourceType":"DiagnosticReport"}'
    attachment = Attachment("report.json", fhir, "application/fhir+json", "FHIR R4")
    for language in ("ko", "en", "vi"):
        report = sample_report(language)
        renderer.render(report, image, heatmap.getvalue(), [attachment])  # warm-up
        timings, cpu, size = [], [], 0
        for _ in range(repeats):
            started, started_cpu = time.perf_counter(), time.process_time()
            size = len(renderer.render(report, image, heatmap.getvalue(), [attachment]))
            timings.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        print(
            f"{language}: median {statistics.median(timings):.0f} ms wall, "
            f"{statistics.median(cpu):.0f} ms CPU (min wall {min(timings):.0f}, n={repeats}, "
            f"{size // 1024} KiB)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
