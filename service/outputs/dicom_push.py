"""`DicomPusher`: send a report's DICOM instances to a PACS by STOW-RS, with bounded retries.

`POST {dicom_push_url}/studies` as `multipart/related; type="application/dicom"` (PS3.18
§10.5), `Authorization: Bearer` when a token is set. A network error, 408, 429 or 5xx is retried
(`dicom_push_attempts` tries, exponential backoff from `dicom_push_backoff_s`, a Retry-After up
to 30 s is honoured); any other answer is final. 200, or 202 without a Failed SOP Sequence
(warnings only), is `succeeded`; 202 with one is `partial`; everything else `failed`. Every
push writes one audit record (client `skinscreen`, action `create`, resource
ImagingStudy/<study UID>, detail `stow_<status>`) and its outcome is kept as the `dicom-push`
artifact; a failure never fails the report.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from service.logging import get_logger
from service.security.audit import AuditLog
from service.settings import Settings

PUSH = "dicom-push"
RETRIED = frozenset({408, 429, 500, 502, 503, 504})
MAX_DELAY_S = 30.0
log = get_logger(__name__)


@dataclass(frozen=True)
class PushOutcome:
    """What one push achieved (JSON-ready by `as_json`)."""

    status: str  # succeeded | partial | failed
    http_status: int | None
    attempts: int
    instances: int
    failed_instances: tuple[str, ...] = ()
    error: str | None = None
    duration_ms: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "http_status": self.http_status,
            "attempts": self.attempts,
            "instances": self.instances,
            "failed_instances": list(self.failed_instances),
            "error": self.error,
            "duration_ms": self.duration_ms,
        }


class DicomPusher:
    """STOW-RS client of one configured DICOMweb endpoint."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        attempts: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 30.0,
        audit: AuditLog | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/studies"
        self.token, self.attempts, self.backoff_s = token, max(1, attempts), backoff_s
        self.timeout_s, self.audit, self.transport = timeout_s, audit, transport

    @classmethod
    def from_settings(cls, settings: Settings, audit: AuditLog | None) -> DicomPusher | None:
        """The configured pusher, or None when `dicom_push_url` is unset."""
        if not settings.dicom_push_url:
            return None
        return cls(
            settings.dicom_push_url,
            token=settings.dicom_push_token,
            attempts=settings.dicom_push_attempts,
            backoff_s=settings.dicom_push_backoff_s,
            timeout_s=settings.dicom_push_timeout_s,
            audit=audit,
        )

    async def push(self, study_uid: str, instances: list[bytes]) -> PushOutcome:
        """Send `instances` (Part 10 bytes) in one STOW-RS request, retrying transient failures."""
        started = time.monotonic()
        boundary = uuid.uuid4().hex
        body = (
            b"".join(
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + i + b"\r\n"
                for i in instances
            )
            + f"--{boundary}--\r\n".encode()
        )
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        outcome = await self._send(body, headers, len(instances))
        outcome = PushOutcome(
            **{**outcome.__dict__, "duration_ms": int((time.monotonic() - started) * 1000)}
        )
        await self._record(study_uid, outcome)
        return outcome

    async def _send(self, body: bytes, headers: dict[str, str], count: int) -> PushOutcome:
        attempt, last_status, error = 0, None, None
        async with httpx.AsyncClient(timeout=self.timeout_s, transport=self.transport) as http:
            while attempt < self.attempts:
                attempt += 1
                retry_after = None
                try:
                    response = await http.post(self.url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    last_status, error = None, f"network error ({type(exc).__name__})"
                else:
                    last_status = response.status_code
                    if last_status not in RETRIED:
                        return _answer(response, attempt, count)
                    error = f"HTTP {last_status}"
                    retry_after = _retry_after(response)
                if attempt < self.attempts:
                    await asyncio.sleep(
                        retry_after if retry_after is not None else self._delay(attempt)
                    )
        return PushOutcome("failed", last_status, attempt, count, error=error)

    def _delay(self, attempt: int) -> float:
        return float(min(MAX_DELAY_S, self.backoff_s * 2 ** (attempt - 1)))

    async def _record(self, study_uid: str, outcome: PushOutcome) -> None:
        if self.audit is not None:
            await self.audit.record(
                client="skinscreen",
                action="create",
                resource_type="ImagingStudy",
                resource_id=study_uid,
                outcome="success" if outcome.status == "succeeded" else "failed",
                source=urlsplit(self.url).hostname,
                detail=f"stow_{outcome.http_status or 'unreachable'}",
            )
        emit = log.info if outcome.status == "succeeded" else log.warning
        emit(
            "dicom.push",
            status=outcome.status,
            http_status=outcome.http_status,
            attempts=outcome.attempts,
            instances=outcome.instances,
            duration_ms=outcome.duration_ms,
        )


def _answer(response: httpx.Response, attempt: int, count: int) -> PushOutcome:
    status = response.status_code
    failed: tuple[str, ...] = ()
    try:
        body = response.json() if response.content else {}
        items = (body.get("00081198") or {}).get("Value") or [] if isinstance(body, dict) else []
        failed = tuple(str(((i.get("00081155") or {}).get("Value") or [""])[0]) for i in items)
    except ValueError:
        pass
    if status in (200, 202) and not failed:  # a 202 without failures carries warnings only
        return PushOutcome("succeeded", status, attempt, count)
    if status == 202 and len(failed) < count:
        return PushOutcome("partial", status, attempt, count, failed)
    return PushOutcome("failed", status, attempt, count, failed, error=f"HTTP {status}")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return min(MAX_DELAY_S, float(value)) if value.isdigit() else None
