"""`SessionBatcher`: concurrent classifier passes share one onnxruntime `run`.

Each caller (a run, in a worker thread) preprocesses its own images — decode, resize and the
quality measurements stay parallel — then queues its input rows and waits; one collector
thread takes the first request and every other one already waiting, up to `max_rows`, runs the
session once on the stacked rows and hands each caller its slice. A lone request is never held
back to wait for company: under load requests pile up while the previous pass runs, and the
next pass takes them all.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Rows = npt.NDArray[np.float32]
Outputs = list[npt.NDArray[np.generic]]


@dataclass
class _Request:
    rows: Rows
    done: threading.Event = field(default_factory=threading.Event)
    outputs: Outputs | None = None
    error: BaseException | None = None


class SessionBatcher:
    """Wraps `run(rows) -> outputs` (each output with one row per input row); thread-safe."""

    def __init__(self, run: Callable[[Rows], Outputs], max_rows: int = 8) -> None:
        self._run = run
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._collect, name="onnx-batches", daemon=True)
        self._thread.start()
        self.passes = 0  # session runs (for tests and the benchmark)
        self.rows = 0

    def run(self, rows: Rows) -> Outputs:
        """The outputs for `rows`, possibly computed together with other callers' rows."""
        request = _Request(rows)
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.outputs is not None
        return request.outputs

    def _collect(self) -> None:
        while True:
            batch = [self._queue.get()]
            size = len(batch[0].rows)
            while size < self.max_rows:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(request)
                size += len(request.rows)
            try:
                outputs = self._run(np.concatenate([r.rows for r in batch], axis=0))
                start = 0
                for request in batch:
                    stop = start + len(request.rows)
                    request.outputs = [output[start:stop] for output in outputs]
                    start = stop
            except BaseException as exc:  # every waiter gets the failure, none hangs
                for request in batch:
                    request.error = exc
            finally:
                self.passes += 1
                self.rows += size
                for request in batch:
                    request.done.set()
