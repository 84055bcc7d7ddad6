"""Choose the narrator from settings; the knowledge narrator is also every run's fallback."""

from __future__ import annotations

from functools import cache

from service.pipeline.narrators.base import Narrator
from service.pipeline.narrators.deadlines import Deadlines
from service.pipeline.narrators.knowledge import KnowledgeNarrator
from service.settings import Settings


@cache
def knowledge_fallback() -> Narrator:
    """The curated knowledge narrator (default backend, and the fallback when an LLM is down)."""
    return KnowledgeNarrator()


def build_narrator(settings: Settings) -> Narrator:
    """`knowledge` | `medgemma` (needs the `medgemma` extra and a local model dir) | `openai`.

    Raises ValueError for an unusable configuration, so a misconfigured service fails at
    start-up rather than on the first request.
    """
    if settings.narrator == "knowledge":
        return knowledge_fallback()
    deadlines = llm_deadlines(settings)
    if settings.narrator == "medgemma":
        if settings.medgemma_model_dir is None:
            raise ValueError("narrator=medgemma needs SKINSCREEN_MEDGEMMA_MODEL_DIR")
        try:
            from service.pipeline.narrators.medgemma import MedGemmaNarrator
        except ImportError as exc:
            raise ValueError(f"narrator=medgemma needs the `medgemma` extra: {exc}") from exc
        return MedGemmaNarrator(
            settings.medgemma_model_dir,
            device=settings.medgemma_device,
            max_new_tokens=settings.medgemma_max_new_tokens,
            queue_size=settings.medgemma_queue_size,
            dtype=settings.medgemma_dtype,
            quantization=settings.medgemma_quantization,
            deadlines=deadlines,
        )
    from service.pipeline.narrators.openai_compat import OpenAICompatNarrator

    return OpenAICompatNarrator(
        settings.openai_servers,
        settings.openai_model,
        api_key=settings.openai_api_key,
        timeout_s=settings.openai_timeout_s,
        connect_timeout_s=settings.openai_connect_timeout_s,
        retries=settings.openai_retries,
        max_tokens=settings.openai_max_tokens,
        send_image=settings.openai_send_image,
        max_concurrency=settings.openai_max_concurrency,
        queue_size=settings.openai_queue_size,
        deadlines=deadlines,
    )


def llm_deadlines(settings: Settings) -> Deadlines:
    """First-token, inter-token and overall deadlines of the language-model narrators."""
    return Deadlines(
        first_token_s=settings.llm_first_token_s,
        inter_token_s=settings.llm_inter_token_s,
        total_s=settings.llm_deadline_s,
    )
