"""MedGemma (or any Gemma 3 style image-text model) run in-process with transformers.

Weights come from a local directory only (`local_files_only=True`); on CUDA they load as
bitsandbytes 4-bit NF4 by default. The model is loaded once, lazily or at start-up. Generation
runs in a worker thread and streams through `AsyncTextIteratorStreamer` into the event loop; one
generation at a time per device, with a bounded FIFO of waiting runs. A consumer that stops
iterating (or a cancelled task) stops generation through a StoppingCriteria at the next token.
Needs the `medgemma` extra (torch, transformers, accelerate, bitsandbytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, Literal

import structlog
import torch
from transformers import (
    AsyncTextIteratorStreamer,
    AutoModelForImageTextToText,
    AutoProcessor,
    BitsAndBytesConfig,
    StoppingCriteria,
    StoppingCriteriaList,
)

from service.errors import ServiceUnavailable
from service.pipeline.domain import ModelInfo
from service.pipeline.narrators.base import (
    NarrationRequest,
    NarratorStreamError,
    NarratorTruncated,
    NarratorUnavailable,
)
from service.pipeline.narrators.deadlines import Deadlines, bounded
from service.pipeline.narrators.device_queue import DeviceQueue, queue_for
from service.pipeline.narrators.prompts import build_hf_messages

log = structlog.get_logger(__name__)

Device = Literal["auto", "cuda", "cpu"]
_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
#: Assumed seconds per generation before one has been measured (for Retry-After).
_DEFAULT_RUN_S = 30.0
#: How long a stopped stream waits for the generation thread to reach its next token (the
#: device stays taken until it does: `DeviceQueue` is released by that thread).
_STOP_GRACE_S = 5.0


class _StopOnEvent(StoppingCriteria):
    """Ends generation at the next token once `event` is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        stop = torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)
        return stop.to(input_ids.device)  # type: ignore[return-value]


class _CountingStreamer(AsyncTextIteratorStreamer):
    """The async streamer, also counting generated tokens (for logs)."""

    tokens = 0

    def put(self, value: torch.Tensor) -> None:
        if not (self.skip_prompt and self.next_tokens_are_prompt):
            self.tokens += int(value.numel())
        super().put(value)


class MedGemmaNarrator:
    """Streams a report written by a local Gemma 3 image-text model (MedGemma 4B in production)."""

    without_llm = False

    def __init__(
        self,
        model_dir: Path,
        device: Device = "auto",
        max_new_tokens: int = 768,
        queue_size: int = 4,
        *,
        dtype: Literal["auto", "bfloat16", "float32"] = "auto",
        quantization: Literal["auto", "4bit", "none"] = "auto",
        deadlines: Deadlines | None = None,
    ) -> None:
        if not (model_dir / "config.json").is_file():
            raise ValueError(f"no model at {model_dir} (config.json missing)")
        self.model_dir = model_dir
        self.device = _resolve(device)
        self.max_new_tokens = max_new_tokens
        self.queue_size = queue_size
        self.deadlines = deadlines or Deadlines()
        self.dtype = _DTYPES["bfloat16" if dtype == "auto" else dtype]
        on_cuda = self.device.startswith("cuda")
        self.quantized = quantization == "4bit" or (quantization == "auto" and on_cuda)
        self.info: ModelInfo = model_info(model_dir)
        self._queue: DeviceQueue = queue_for(self.device)
        self._load_lock = threading.Lock()
        self._model: Any = None
        self._processor: Any = None
        self._run_s = _DEFAULT_RUN_S

    @property
    def model(self) -> Any:
        """The loaded transformers model (loads it on first access)."""
        self.load()
        return self._model

    def load(self) -> None:
        """Load processor and weights once (thread-safe); NarratorUnavailable on failure."""
        with self._load_lock:
            if self._model is not None:
                return
            started = time.perf_counter()
            kwargs: dict[str, Any] = {"local_files_only": True, "dtype": self.dtype}
            if self.quantized:
                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True,
                    bnb_4bit_quant_type="nf4",
                    bnb_4bit_compute_dtype=torch.bfloat16,
                    bnb_4bit_use_double_quant=True,
                )
                kwargs["device_map"] = {"": self.device}
            try:
                processor = AutoProcessor.from_pretrained(self.model_dir, local_files_only=True)
                model: Any = AutoModelForImageTextToText.from_pretrained(self.model_dir, **kwargs)
                if not self.quantized:
                    model = model.to(self.device)
            except Exception as exc:  # any load failure (I/O, format, memory) → fall back
                log.error("narrator.load_failed", model=self.info.name, error=type(exc).__name__)
                raise NarratorUnavailable(f"cannot load {self.info.name}: {exc}") from exc
            self._processor, self._model = processor, model.eval()
            log.info(
                "narrator.loaded",
                model=self.info.name,
                device=self.device,
                quantized=self.quantized,
                seconds=round(time.perf_counter() - started, 2),
            )

    async def warm_up(self) -> None:
        """Load the model without blocking the event loop (for start-up)."""
        await asyncio.to_thread(self.load)

    def ensure_capacity(self) -> None:
        """503 + Retry-After when `queue_size` runs already wait for this device."""
        waiting = self._queue.waiting
        if waiting >= self.queue_size:
            retry_after = min(600, max(1, math.ceil(self._run_s * (waiting + 1))))
            raise ServiceUnavailable(
                "The language model is busy; try again later.", retry_after=retry_after
            )

    def stream(self, request: NarrationRequest) -> AsyncIterator[str]:
        """Yield the report text as the model writes it, under the deadlines (a breach stops
        generation at the next token); `NarratorTruncated` when it hits `max_new_tokens`."""
        return bounded(self._stream(request), self.deadlines)

    async def _stream(self, request: NarrationRequest) -> AsyncGenerator[str, None]:
        if self._queue.waiting >= self.queue_size:
            raise NarratorUnavailable("narrator queue is full")
        await self._queue.acquire()
        stop = threading.Event()
        worker: asyncio.Future[None] | None = None
        try:
            await asyncio.to_thread(self.load)
            inputs = await asyncio.to_thread(self._inputs, request)
            streamer = _CountingStreamer(
                self._processor.tokenizer, skip_prompt=True, skip_special_tokens=True
            )
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            worker = loop.run_in_executor(None, self._generate, inputs, streamer, stop)
            yielded = False
            async for text in streamer:
                if text:
                    yielded = True
                    yield text
            try:
                await worker
            except Exception as exc:
                failed = NarratorStreamError if yielded else NarratorUnavailable
                raise failed(f"generation failed: {type(exc).__name__}") from exc
            if streamer.tokens >= self.max_new_tokens:
                raise NarratorTruncated(f"the model's text ended at {self.max_new_tokens} tokens")
            seconds = time.perf_counter() - started
            self._run_s = 0.7 * self._run_s + 0.3 * seconds
            log.info(
                "narrator.generated",
                case_id=request.case_id,
                model=self.info.name,
                tokens=streamer.tokens,
                seconds=round(seconds, 2),
                tokens_per_s=round(streamer.tokens / seconds, 1) if seconds else None,
            )
        finally:
            stop.set()
            if worker is None:
                self._queue.release()
            elif not worker.done():  # wait for the next token's stop, but not for a hung device
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(worker), _STOP_GRACE_S)

    def _inputs(self, request: NarrationRequest) -> Any:
        """Chat template + image → tensors on the model's device."""
        inputs = self._processor.apply_chat_template(
            build_hf_messages(request),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
        return inputs.to(self._model.device, dtype=self.dtype)

    def _generate(self, inputs: Any, streamer: _CountingStreamer, stop: threading.Event) -> None:
        """Worker thread: generate greedily; always end the stream and free the device."""
        try:
            with torch.inference_mode():
                self._model.generate(
                    **inputs,
                    streamer=streamer,
                    max_new_tokens=self.max_new_tokens,
                    do_sample=False,
                    stopping_criteria=StoppingCriteriaList([_StopOnEvent(stop)]),
                )
        except BaseException:
            streamer.end()
            raise
        finally:
            self._queue.release()


_WEIGHTS = ("*.safetensors", "*.bin", "*.gguf", "*.pt")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def model_info(model_dir: Path) -> ModelInfo:
    """Name from config.json (`_name_or_path`, else the folder name); version = the Hugging Face
    snapshot commit when the folder is a hub snapshot, else "local"; sha256 over the weight files
    in name order (for a single file: that file's own sha256)."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    resolved = model_dir.resolve()
    name = str(config.get("_name_or_path") or resolved.name)
    in_snapshot = bool(_COMMIT.match(resolved.name)) and resolved.parent.name == "snapshots"
    version = resolved.name if in_snapshot else "local"
    digest = hashlib.sha256()
    files = sorted({path for pattern in _WEIGHTS for path in model_dir.glob(pattern)})
    if not files:
        raise ValueError(f"no weight files in {model_dir}")
    for path in files:
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return ModelInfo(name=name, version=version, sha256=digest.hexdigest(), kind="narrator")


def _resolve(device: Device) -> str:
    """`auto` → `cuda` when a GPU is visible, else `cpu`; CUDA asked for but absent is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("medgemma_device=cuda but no CUDA device is available")
    return device
