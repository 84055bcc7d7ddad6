"""`AuditLog`: the append-only audit trail of every create, read, review, delete, token issue
and refusal — who (client id), what (action, resource type and id), when, outcome, from where.

Records are stored with the jobs (`JobStore.append_audit`) but never tied to them: no foreign
key, untouched by retention and erasure, so they outlive the cases they describe. They hold
codes and resource ids only: every field is checked against a narrow pattern and anything else
is replaced (`other`, `unknown` or nothing), so free text — possibly PHI — can never land there.
Writing a record never fails the request it describes: a store error is logged and swallowed.
"""

from __future__ import annotations

import re
import uuid

from service.logging import get_logger
from service.store.base import JobStore
from service.store.records import AuditRecord, now_iso

log = get_logger(__name__)

ACTIONS = frozenset({"create", "read", "update", "delete", "execute", "token", "login"})
OUTCOMES = frozenset({"success", "denied", "not-found", "failed"})
#: The most records one search returns.
MAX_PAGE = 1000

_CODE = re.compile(r"[a-z0-9_.:-]{1,40}")  # action, detail
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z0-9]{0,39}")  # DiagnosticReport, Job, Token…
_RESOURCE_ID = re.compile(r"[A-Za-z0-9.-]{1,64}")  # the FHIR id pattern
_CLIENT = re.compile(r"[A-Za-z0-9_.:@/+=-]{1,128}")  # OAuth client ids, no spaces
_SOURCE = re.compile(r"[A-Za-z0-9.:%\[\]-]{1,64}")  # IPv4, IPv6, a host name


def safe_code(value: object) -> str:
    """`value` when it is a short machine code (`[a-z0-9_.:-]{1,40}`), else `other`."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else "other"


def _matching(pattern: re.Pattern[str], value: object) -> str | None:
    return value if isinstance(value, str) and pattern.fullmatch(value) else None


def audit_record(
    *,
    client: str,
    action: str,
    resource_type: str,
    resource_id: str | None = None,
    outcome: str = "success",
    source: str | None = None,
    detail: str | None = None,
) -> AuditRecord:
    """A new record (fresh id, now), every field reduced to what may be stored."""
    return AuditRecord(
        id=uuid.uuid4().hex,
        at=now_iso(),
        client=_matching(_CLIENT, client) or "unknown",
        action=safe_code(action),
        resource_type=_matching(_RESOURCE_TYPE, resource_type) or "Other",
        # An id that is not a FHIR id (e.g. a path segment a caller made up) is not kept.
        resource_id=_matching(_RESOURCE_ID, resource_id),
        outcome=outcome if outcome in OUTCOMES else "failed",
        source=_matching(_SOURCE, source),
        detail=None if detail is None else safe_code(detail),
    )


class AuditLog:
    """The audit trail over a `JobStore`."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    async def record(
        self,
        *,
        client: str,
        action: str,
        resource_type: str,
        resource_id: str | None = None,
        outcome: str = "success",
        source: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one record; never raises into the request (a failure is logged)."""
        try:
            await self.store.append_audit(
                audit_record(
                    client=client,
                    action=action,
                    resource_type=resource_type,
                    resource_id=resource_id,
                    outcome=outcome,
                    source=source,
                    detail=detail,
                )
            )
        except Exception as exc:
            log.warning("audit.write_failed", error=type(exc).__name__)

    async def search(
        self,
        *,
        client: str | None = None,
        since: str | None = None,
        until: str | None = None,
        action: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """Records newest first; `since` inclusive, `until` exclusive; at most `MAX_PAGE`."""
        return await self.store.audit_records(
            client=client,
            since=since,
            until=until,
            action=action,
            limit=min(max(0, limit), MAX_PAGE),
            offset=max(0, offset),
        )

    async def get(self, record_id: str) -> AuditRecord | None:
        """One record by id."""
        return await self.store.get_audit(record_id)
