"""One typed settings object, read from the environment with the prefix `SKINSCREEN_`.

Every field has an embedded default so the service runs with no configuration at all.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Service configuration. Environment: `SKINSCREEN_<FIELD>` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="SKINSCREEN_", extra="ignore")

    # --- HTTP -------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str | None = Field(
        default=None,
        description="Absolute base URL used in links (FHIR fullUrl, self/next, Content-Location, "
        "the CapabilityStatement, SMART discovery); default http://<host>:<port> from these "
        "settings. Never taken from the Host header.",
    )
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, description="Request body limit.")
    body_idle_timeout_s: float = Field(
        default=15.0, gt=0, description="Longest wait for the next chunk of a request body (408)."
    )
    body_timeout_s: float = Field(
        default=120.0, gt=0, description="Longest time a whole request body may take (408)."
    )
    log_level: str = "INFO"
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces): one span "
        "per pipeline stage (needs the `otel` extra).",
    )
    log_json: bool = True

    # --- images -------------------------------------------------------------------------------
    max_image_pixels: int = 40_000_000
    min_image_side: int = 32
    decode_concurrency: int = Field(
        default=2, ge=1, description="Images (and DICOM instances) decoding at the same time."
    )

    # --- case text (every door) ---------------------------------------------------------------
    max_name_chars: int = Field(default=200, description="Longest patient name accepted.")
    max_history_chars: int = Field(default=4000, description="Longest history text accepted.")
    pdf_render_budget_s: float = Field(
        default=20.0, gt=0, description="Seconds one PDF layout may take before the run fails."
    )

    # --- classifier ---------------------------------------------------------------------------
    models_dir: Path = REPO_ROOT / "models"
    classifier: Literal["yolo", "effnet", "ensemble", "default"] = Field(
        default="default",
        description="Backend; `default` is the shipped one with the best macro-F1 (a "
        "cross-validated figure before a val one).",
    )
    yolo_model: str = "skinscreen-yolov8n-cls"
    effnet_model: str = "skinscreen-efficientnet-lite1"
    onnx_threads: int = 2
    classify_max_batch: int = Field(
        default=8,
        description="Concurrent classifications that share one batched ONNX pass (1: none).",
    )
    inconclusive_below: float = Field(
        default=0.5, description="Calibrated top probability under which a result is inconclusive."
    )
    inconclusive_margin: float = Field(
        default=0.1, description="Top-1 minus top-2 probability under which it is inconclusive."
    )

    # --- narrators ----------------------------------------------------------------------------
    narrator: Literal["knowledge", "medgemma", "openai"] = "knowledge"
    medgemma_model_dir: Path | None = None
    medgemma_device: Literal["auto", "cuda", "cpu"] = "auto"
    medgemma_max_new_tokens: int = 768
    medgemma_queue_size: int = 4
    openai_base_url: str = "http://127.0.0.1:8080/v1"
    openai_model: str = "medgemma-4b-it"
    openai_api_key: str | None = None
    openai_timeout_s: float = 60.0
    openai_connect_timeout_s: float = Field(default=5.0, gt=0, le=5.0)
    openai_retries: int = 2
    openai_max_tokens: int = 768
    # MedGemma / OpenAI narrator tuning (issue 4, part 2b).
    medgemma_dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto", description="Unquantized weights' dtype; `auto` is bfloat16."
    )
    medgemma_quantization: Literal["auto", "4bit", "none"] = Field(
        default="auto", description="`auto`: bitsandbytes 4-bit NF4 on CUDA, none on CPU."
    )
    medgemma_preload: bool = Field(
        default=False, description="Load the model at start-up instead of on the first run."
    )
    openai_send_image: bool = Field(
        default=True, description="Send the photo to the server (off for text-only models)."
    )
    # OpenAI-compatible narrator scale-out: several servers, pooled clients, bounded load.
    openai_base_urls: str | None = Field(
        default=None,
        description=(
            "Comma-separated base URLs of several OpenAI-compatible servers (load spreading "
            "and fail-over); unset: `openai_base_url` alone."
        ),
    )
    openai_max_concurrency: int = Field(
        default=8,
        ge=1,
        description="Requests in flight per server at once (per process); more wait in the queue.",
    )
    openai_queue_size: int = Field(
        default=16,
        ge=0,
        description=(
            "Runs that may wait for a server slot (per process); when every slot is taken and "
            "the queue is full, new submissions get 503 + Retry-After."
        ),
    )

    # Deadlines on a language model's text (medgemma, openai); any breach → knowledge fallback.
    llm_first_token_s: float = Field(
        default=45.0,
        gt=0,
        description="Longest wait for the first text token (queue, connect, retries, load).",
    )
    llm_inter_token_s: float = Field(
        default=20.0,
        gt=0,
        description="Longest gap between text tokens (SSE keep-alive comments do not count).",
    )
    llm_deadline_s: float = Field(
        default=240.0, gt=0, description="Longest a language model may take for the whole text."
    )

    # --- reports, jobs, storage -----------------------------------------------------------------
    templates_dir: Path = REPO_ROOT / "templates"
    default_language: Literal["ko", "en", "vi"] = "en"
    data_dir: Path = REPO_ROOT / "var"
    store_path: Path | None = Field(
        default=None, description="SQLite file (default data_dir/skinscreen.db)."
    )
    encryption_key_file: Path | None = Field(
        default=None,
        description="File with a 32-byte key (64 hex digits, mode 0600): stored photos and "
        "artifacts (PDFs, FHIR/DICOM outputs) are sealed with AES-256-GCM; unset: stored as "
        "they are.",
    )
    job_retention_hours: int = 72
    max_jobs_stored: int = 2000
    sse_keepalive_s: float = 15.0
    report_heatmap: bool = Field(default=True, description="Put an occlusion heatmap in the PDF.")
    max_concurrent_runs: int = Field(
        default=16, description="Cases one worker process runs at once (`worker --concurrency`)."
    )
    database_url: str | None = Field(
        default=None,
        description="`postgresql://…` for the shared PostgreSQL store (replicas and workers); "
        "unset: the embedded SQLite file.",
    )
    job_lease_s: float = Field(
        default=30.0, description="A worker's lease on a case; renewed every third of it."
    )
    job_max_attempts: int = Field(
        default=3, description="Runs of one case (after a worker died) before it fails."
    )
    max_queued_jobs: int = Field(
        default=200,
        description="Cases queued or running at once; beyond it 503 + Retry-After.",
    )
    max_queued_per_client: int = Field(
        default=100,
        description="Cases one client may have queued or running; beyond it 429 + Retry-After.",
    )
    shutdown_grace_s: float = Field(
        default=20.0, description="On SIGTERM, how long running cases may take to finish."
    )

    # --- security -----------------------------------------------------------------------------
    auth: Literal["off", "on"] = Field(
        default="off",
        description="`off` only while binding a loopback address (a loud log line says so); "
        "`on`: every route but /health, /ready, the page's static files and the SMART "
        "configuration needs an API key or a bearer token.",
    )
    clients_file: Path | None = Field(
        default=None, description="JSON registry of API clients (default data_dir/clients.json)."
    )
    signing_key_path: Path | None = Field(
        default=None,
        description="PEM EC P-384 private key signing our access tokens "
        "(default data_dir/signing-key.pem, generated at first start).",
    )
    token_lifetime_s: int = Field(default=300, description="Access token lifetime (≤ 300 s).")
    trusted_issuers: str | None = Field(
        default=None,
        description="JSON {issuer: JWKS URL or file} whose access tokens are accepted too.",
    )
    rate_limit_per_minute: int = Field(
        default=600, description="Requests per client per minute (auth on); 429 beyond it."
    )
    cors_allow_origins: str = Field(
        default="", description="Comma-separated origins allowed by CORS (default: none)."
    )

    # --- FHIR -------------------------------------------------------------------------------------
    fhir_server_url: str | None = None
    fhir_fetch_timeout_s: float = 10.0
    fhir_write_back: bool = False
    # SMART Backend Services to the FHIR server (client_credentials + private_key_jwt): with a
    # client id and a key, every request to it carries `Authorization: Bearer <token>`.
    fhir_client_id: str | None = Field(
        default=None, description="Our client id at the FHIR server's authorization server."
    )
    fhir_client_key_path: Path | None = Field(
        default=None,
        description="PEM private key (RSA → RS384, EC P-384 → ES384) signing our client "
        "assertions; its public half is registered with the EHR as a JWKS.",
    )
    fhir_client_key_id: str | None = Field(
        default=None,
        description="`kid` of the assertions (default: the key's RFC 7638 thumbprint).",
    )
    fhir_client_scopes: str = Field(
        default="system/Patient.r system/Binary.r system/Media.r system/*.c",
        description="Space-separated SMART scopes asked for.",
    )
    fhir_token_url: str | None = Field(
        default=None,
        description="Token endpoint (https, or http on loopback); default: the `token_endpoint` "
        "of {fhir_server_url}/.well-known/smart-configuration.",
    )

    # --- DICOM push ---------------------------------------------------------------------------
    dicom_push_url: str | None = Field(
        default=None,
        description="DICOMweb root of a PACS/VNA (e.g. https://pacs/dicomweb): every report's "
        "Encapsulated PDF and SR are sent there by STOW-RS (`{url}/studies`); unset: no push.",
    )
    dicom_push_token: str | None = Field(
        default=None, description="Sent as `Authorization: Bearer <token>` with each push."
    )
    dicom_push_attempts: int = Field(default=4, ge=1, le=10, description="Tries per push.")
    dicom_push_backoff_s: float = Field(
        default=0.5, ge=0, description="First retry delay; doubled per retry, at most 30 s."
    )
    dicom_push_timeout_s: float = 30.0

    # --- reference data (tests, evaluation) ------------------------------------------------
    shared_dir: Path = REPO_ROOT.parent / "shared"

    @property
    def openai_servers(self) -> list[str]:
        """`openai_base_urls` split on commas, else `[openai_base_url]`."""
        urls = [url.strip() for url in (self.openai_base_urls or "").split(",") if url.strip()]
        return urls or [self.openai_base_url]

    @property
    def sqlite_path(self) -> Path:
        """Where the job/report store lives."""
        return self.store_path or self.data_dir / "skinscreen.db"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings(...)` instead)."""
    return Settings()
