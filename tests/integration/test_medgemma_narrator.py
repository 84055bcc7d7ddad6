"""The real MedGemma narrator code on a tiny random Gemma 3 image-text model, on CPU."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.ci import IN_CI
from tests.support.factories import classification, narration_request

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no hub access
_MISSING = [m for m in ("torch", "transformers", "bitsandbytes") if not importlib.util.find_spec(m)]
if _MISSING:
    _REASON = f"MEDGEMMA TESTS NOT RUN: install the medgemma extra ({', '.join(_MISSING)})"
    if IN_CI:
        pytest.fail(_REASON, pytrace=False)
    pytest.skip(_REASON, allow_module_level=True)

from service.errors import ServiceUnavailable  # noqa: E402
from service.pipeline.domain import ModelInfo, Patient  # noqa: E402
from service.pipeline.narrators.base import (  # noqa: E402
    NarrationRequest,
    NarratorTruncated,
    NarratorUnavailable,
)
from service.pipeline.narrators.deadlines import Deadlines, NarratorDeadline  # noqa: E402
from service.pipeline.narrators.factory import build_narrator  # noqa: E402
from service.pipeline.narrators.medgemma import MedGemmaNarrator  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.tiny_gemma import IMAGE_SIZE, build_tiny_gemma  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Gemma 3 multimodal model saved like a hub checkpoint."""
    return build_tiny_gemma(tmp_path_factory.mktemp("models") / "tiny-random-gemma3")


def _request(case_id: str = "case-1") -> NarrationRequest:
    return narration_request(
        case_id,
        result=classification("Acne", 0.7, Rosacea=0.1),
        patient=Patient(age=30, sex="male"),
        history="Two weeks.",
        image=Image.new("RGB", (120, 90), (190, 110, 100)),
    )


async def _until_truncated(stream: AsyncIterator[str]) -> list[str]:
    """Every chunk of a random model's text, which always runs to `max_new_tokens`."""
    chunks: list[str] = []
    with pytest.raises(NarratorTruncated):
        async for chunk in stream:
            chunks.append(chunk)
    return chunks


def _narrator(path: Path, **kwargs: Any) -> MedGemmaNarrator:
    options: dict[str, Any] = {"device": "cpu", "max_new_tokens": 24, "queue_size": 1}
    options.update(kwargs)
    return MedGemmaNarrator(path, dtype="float32", **options)


@pytest.fixture
def forward_calls(tiny_gemma_dir: Path) -> Iterator[tuple[MedGemmaNarrator, list[float]]]:
    """A narrator whose language model records the time of every forward pass."""
    narrator = _narrator(tiny_gemma_dir, max_new_tokens=5000)
    calls: list[float] = []
    hook = narrator.model.model.language_model.register_forward_hook(
        lambda *_: calls.append(time.perf_counter())
    )
    yield narrator, calls
    hook.remove()


def test_streams_chunks_and_sees_the_image(tiny_gemma_dir: Path) -> None:
    narrator = _narrator(tiny_gemma_dir)
    seen: list[tuple[int, ...]] = []
    narrator.model.model.vision_tower.register_forward_hook(
        lambda _m, args, kwargs, _o: seen.append(
            tuple((args[0] if args else kwargs["pixel_values"]).shape)
        ),
        with_kwargs=True,
    )

    chunks = asyncio.run(_until_truncated(narrator.stream(_request())))  # a random model
    assert len(chunks) >= 3 and "".join(chunks).strip()
    assert seen == [(1, 3, IMAGE_SIZE, IMAGE_SIZE)]  # pixel_values reached the SigLIP tower
    weights = (tiny_gemma_dir / "model.safetensors").read_bytes()
    assert narrator.info == ModelInfo(
        name="tiny-random-gemma3",
        version="local",
        sha256=hashlib.sha256(weights).hexdigest(),
        kind="narrator",
    )
    assert narrator.without_llm is False


def test_one_generation_at_a_time_with_a_bounded_queue(tiny_gemma_dir: Path) -> None:
    narrator = _narrator(tiny_gemma_dir, max_new_tokens=40)
    narrator.load()
    spans: dict[str, tuple[float, float]] = {}
    refused: list[BaseException] = []

    async def run(case_id: str) -> None:
        first = 0.0
        with pytest.raises(NarratorTruncated):  # a random model runs to max_new_tokens
            async for _ in narrator.stream(_request(case_id)):
                first = first or time.perf_counter()
                if case_id == "a" and not refused:
                    with pytest.raises(ServiceUnavailable) as info:
                        narrator.ensure_capacity()  # "b" is waiting: the queue (size 1) is full
                    refused.append(info.value)
                    with pytest.raises(NarratorUnavailable):
                        await anext(aiter(narrator.stream(_request("c"))))
        spans[case_id] = (first, time.perf_counter())

    async def main() -> None:
        await asyncio.gather(run("a"), run("b"))

    asyncio.run(main())
    (a_first, a_end), (b_first, b_end) = spans["a"], spans["b"]
    assert a_first < a_end <= b_first < b_end  # b's first chunk only after a finished
    assert refused and refused[0].status == 503 and refused[0].retry_after >= 1  # type: ignore[attr-defined]
    narrator.ensure_capacity()  # queue drained


def test_closing_the_stream_stops_generation(
    forward_calls: tuple[MedGemmaNarrator, list[float]],
) -> None:
    narrator, calls = forward_calls

    async def main() -> None:
        stream = narrator.stream(_request())
        for _ in range(2):
            await anext(stream)
        await stream.aclose()

    asyncio.run(main())
    stopped_at = len(calls)
    time.sleep(0.3)
    assert len(calls) == stopped_at < 200  # stopped long before max_new_tokens=5000


def test_cancelling_the_task_stops_generation_and_frees_the_device(
    forward_calls: tuple[MedGemmaNarrator, list[float]],
) -> None:
    narrator, calls = forward_calls

    async def consume(first: asyncio.Event) -> None:
        async for _ in narrator.stream(_request()):
            first.set()

    async def main() -> float:
        first = asyncio.Event()
        task = asyncio.create_task(consume(first))
        await first.wait()
        task.cancel()
        cancelled_at = time.perf_counter()
        with pytest.raises(asyncio.CancelledError):
            await task
        narrator.max_new_tokens = 8
        assert await _until_truncated(narrator.stream(_request("next")))  # the device is free
        return cancelled_at

    cancelled_at = asyncio.run(main())
    during = [t for t in calls if t > cancelled_at]
    assert len(calls) < 300 and len(during) <= 8 + 4  # the next run's 8 tokens, plus the tail


def test_a_stalled_generation_breaks_the_inter_token_deadline_and_stops(
    forward_calls: tuple[MedGemmaNarrator, list[float]],
) -> None:
    """A forward pass that takes 2 s (a stuck GPU) → NarratorDeadline after 0.5 s; generation
    then stops at the next token and the device is free for the next run."""
    narrator, calls = forward_calls
    narrator.deadlines = Deadlines(first_token_s=30, inter_token_s=0.5, total_s=60)
    hook = narrator.model.model.language_model.register_forward_hook(
        lambda *_: time.sleep(2.0) if len(calls) == 4 else None
    )

    async def main() -> list[str]:
        chunks: list[str] = []
        with pytest.raises(NarratorDeadline, match=r"no token for 0\.5 s"):
            async for chunk in narrator.stream(_request()):
                chunks.append(chunk)
        return chunks

    try:
        started = time.perf_counter()
        chunks = asyncio.run(main())
        seconds = time.perf_counter() - started
    finally:
        hook.remove()
    stopped_at = len(calls)
    assert chunks and stopped_at < 20  # stopped long before max_new_tokens=5000
    time.sleep(0.3)
    assert len(calls) == stopped_at
    narrator.max_new_tokens = 4
    assert asyncio.run(_until_truncated(narrator.stream(_request("next"))))
    print(f"medgemma stall: deadline after {seconds:.2f} s")


def test_unreadable_weights_raise_unavailable_before_any_chunk(
    tiny_gemma_dir: Path, tmp_path: Path
) -> None:
    broken = shutil.copytree(tiny_gemma_dir, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    narrator = _narrator(broken)

    async def first() -> str:
        return await anext(aiter(narrator.stream(_request())))

    with pytest.raises(NarratorUnavailable):
        asyncio.run(first())
    with pytest.raises(ValueError, match=r"config\.json"):
        MedGemmaNarrator(tmp_path / "absent")


def test_bitsandbytes_4bit_path_on_cpu(tmp_path: Path) -> None:
    import bitsandbytes as bnb

    # bitsandbytes' CPU kernels need >= 64 inputs per quantized Linear (one block).
    model_dir = build_tiny_gemma(tmp_path / "tiny-gemma3-4bit", vision_hidden=64)
    narrator = _narrator(model_dir, quantization="4bit")
    try:
        narrator.load()
    except NarratorUnavailable as exc:
        pytest.skip(f"bitsandbytes {bnb.__version__} cannot load 4-bit on this CPU: {exc}")
    quantized = [m for m in narrator.model.modules() if isinstance(m, bnb.nn.modules.Linear4bit)]
    assert quantized and quantized[0].weight.quant_type == "nf4"  # type: ignore[attr-defined]

    assert "".join(asyncio.run(_until_truncated(narrator.stream(_request())))).strip()


def test_factory_builds_the_medgemma_narrator(tiny_gemma_dir: Path) -> None:
    settings = Settings(
        narrator="medgemma",
        medgemma_model_dir=tiny_gemma_dir,
        medgemma_device="cpu",
        medgemma_queue_size=2,
        medgemma_max_new_tokens=16,
    )
    narrator = build_narrator(settings)
    assert isinstance(narrator, MedGemmaNarrator)
    assert (narrator.device, narrator.queue_size, narrator.max_new_tokens) == ("cpu", 2, 16)
    assert narrator.quantized is False  # `auto` quantizes on CUDA only
