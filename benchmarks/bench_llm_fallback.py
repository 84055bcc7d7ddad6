"""Time from the start of narration to the end of the knowledge fallback, per LLM fault.

Run: .venv/bin/python benchmarks/bench_llm_fallback.py [--n 3] [--first 2] [--inter 1]
Prints the median seconds per fault (refused, hang, keepalive_only, stall, keepalive,
truncated) under the given deadlines, against the loopback fault injectors of
`tests/support/faulty_llm.py`. No assertions: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.logging import configure_logging  # noqa: E402
from service.pipeline.narration import Narration, narrate  # noqa: E402
from service.pipeline.narrators.deadlines import Deadlines  # noqa: E402
from service.pipeline.narrators.factory import knowledge_fallback  # noqa: E402
from service.pipeline.narrators.openai_compat import OpenAICompatNarrator  # noqa: E402
from tests.support.factories import narration_request  # noqa: E402
from tests.support.faulty_llm import FaultyLlm  # noqa: E402
from tests.support.live_server import free_port  # noqa: E402

FAULTS = ("refused", "hang", "keepalive_only", "stall", "keepalive", "truncated")


async def _once(url: str, deadlines: Deadlines) -> float:
    narrator = OpenAICompatNarrator(url, "m", retries=1, send_image=False, deadlines=deadlines)
    narrator.backoff_s = 0.05
    out = Narration(narrator)
    started = time.perf_counter()
    async for _ in narrate(narrator, knowledge_fallback(), narration_request(), out):
        pass
    seconds = time.perf_counter() - started
    await narrator.aclose()
    assert out.notices == ["narrator_fallback"], out.notices
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--first", type=float, default=2.0)
    parser.add_argument("--inter", type=float, default=1.0)
    parser.add_argument("--total", type=float, default=10.0)
    args = parser.parse_args()
    configure_logging("ERROR", json=True)
    deadlines = Deadlines(args.first, args.inter, args.total)
    print(f"deadlines: first {args.first} s, inter {args.inter} s, total {args.total} s")
    for fault in FAULTS:
        times = []
        for _ in range(args.n):
            if fault == "refused":
                times.append(asyncio.run(_once(f"http://127.0.0.1:{free_port()}/v1", deadlines)))
                continue
            with FaultyLlm(fault) as llm:
                times.append(asyncio.run(_once(llm.url, deadlines)))
        print(f"{fault:15s} fallback complete after {statistics.median(times):.2f} s (median)")


if __name__ == "__main__":
    main()
