"""The audit trail on the FHIR door: `GET /fhir/AuditEvent` (search) and `/fhir/AuditEvent/{id}`.

Search parameters: `date` (repeatable, with the prefixes `ge` `le` `gt` `lt` `eq` and an ISO date
or instant; a date or an instant without a zone is UTC), `agent` (the client id, or
`system|id`), `action` (our action code — create, read, update, delete, execute, token, login —
or R4's C/R/U/D), `_count` (default 50, at most 500) and `_offset`. The answer is a `searchset`
Bundle, newest first, with `self` and `next` links and no `total`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, QueryParameter

from fhir_mappings.audit_event import audit_event
from service.api.fhir_wire import FHIR_EXCEPTION_HANDLERS, base_url, check_accept, fhir_response
from service.api.rest import services_of
from service.errors import BadRequest, NotFound
from service.security.audit import AuditLog
from service.store.records import now_iso

MAX_COUNT = 500
DEFAULT_COUNT = 50
DATE_HELP = "ge|le|gt|lt|eq + an ISO date or instant (UTC when no zone); may repeat"
_PREFIXES = ("ge", "le", "gt", "lt", "eq")
_LETTERS = {"C": "create", "R": "read", "U": "update", "D": "delete"}
_DATE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def _zone(text: str | None) -> dt.tzinfo:
    if text is None or text == "Z":
        return dt.UTC
    sign = -1 if text[0] == "-" else 1
    return dt.timezone(sign * dt.timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def interval(text: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of an ISO date or instant, at its precision (FHIR date search semantics)."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise ValueError(text)
    part = match.groupdict()
    year, month, day = int(part["y"]), int(part["m"] or 1), int(part["d"] or 1)
    if part["H"] is None:
        start = dt.datetime(year, month, day, tzinfo=dt.UTC)
        if part["d"]:
            return start, start + dt.timedelta(days=1)
        if part["m"]:
            after = (year + month // 12, month % 12 + 1)
            return start, dt.datetime(*after, 1, tzinfo=dt.UTC)
        return start, dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC)
    fraction = part["f"] or ""
    start = dt.datetime(
        year, month, day, int(part["H"]), int(part["M"]), int(part["S"] or 0),
        int((fraction + "000000")[:6]), tzinfo=_zone(part["tz"]),
    )  # fmt: skip
    if part["S"] is None:
        step = dt.timedelta(minutes=1)
    elif not fraction:
        step = dt.timedelta(seconds=1)
    else:  # the store keeps milliseconds
        step = dt.timedelta(microseconds=max(1000, 10 ** (6 - min(len(fraction), 6))))
    return start, start + step


def _utc(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def date_bounds(values: list[str]) -> tuple[str | None, str | None]:
    """(since inclusive, until exclusive) from repeated `date` search values."""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    for value in values:
        prefix, text = (value[:2], value[2:]) if value[:2] in _PREFIXES else ("eq", value)
        text = text.replace(" ", "+")  # an unencoded `+02:00` arrives as a space
        try:
            start, end = interval(text)
        except (ValueError, OverflowError):
            raise BadRequest(
                f"date={value[:40]!r} is not a FHIR date search value "
                "(ge|le|gt|lt|eq + YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|±hh:mm]]]])",
                expression=["date"],
            ) from None
        low = end if prefix == "gt" else start if prefix in ("ge", "eq") else None
        high = start if prefix == "lt" else end if prefix in ("le", "eq") else None
        if low is not None and (since is None or low > since):
            since = low
        if high is not None and (until is None or high < until):
            until = high
    return _utc(since), _utc(until)


def _action(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value == "E":
        raise BadRequest(
            "action=E names several actions; search by execute, token or login",
            expression=["action"],
        )
    return _LETTERS.get(value, value)


def _agent(value: str | None) -> str | None:
    if not value:
        return None
    return value.rpartition("|")[2]  # `system|value` or just the client id


class AuditController(Controller):
    """`/fhir/AuditEvent`: the audit trail, read-only."""

    path = "/fhir"
    tags = ["fhir", "audit"]
    exception_handlers = FHIR_EXCEPTION_HANDLERS  # type: ignore[assignment]

    @get("/AuditEvent", opt={"scopes": ["system/AuditEvent.r"]})
    async def search_audit_events(
        self,
        request: Request[Any, Any, Any],
        date: Annotated[list[str] | None, QueryParameter(description=DATE_HELP)] = None,
        agent: Annotated[str | None, QueryParameter(description="client id")] = None,
        action: Annotated[str | None, QueryParameter(description="action code")] = None,
        count: Annotated[int, QueryParameter(name="_count", ge=1)] = DEFAULT_COUNT,
        offset: Annotated[int, QueryParameter(name="_offset", ge=0, le=1_000_000_000)] = 0,
    ) -> Response[Any]:
        """Audit events, newest first, as a `searchset` Bundle (paged with `next` links)."""
        check_accept(request)
        count = min(count, MAX_COUNT)
        since, until = date_bounds(date or [])
        client, code = _agent(agent), _action(action)
        found = await AuditLog(services_of(request).store).search(
            client=client, since=since, until=until, action=code, limit=count + 1, offset=offset
        )
        base = base_url(request)
        query: list[tuple[str, str]] = [("date", value) for value in date or []]
        query += [(k, v) for k, v in (("agent", agent), ("action", action)) if v]
        query.append(("_count", str(count)))

        def page(at: int) -> str:
            return f"{base}/AuditEvent?{urlencode([*query, ('_offset', str(at))])}"

        links = [{"relation": "self", "url": page(offset)}]
        if len(found) > count:
            links.append({"relation": "next", "url": page(offset + count)})
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "timestamp": now_iso(),
            "link": links,
        }
        entries = [
            {
                "fullUrl": f"{base}/AuditEvent/{record.id}",
                "resource": audit_event(record, base),
                "search": {"mode": "match"},
            }
            for record in found[:count]
        ]
        if entries:
            bundle["entry"] = entries
        return fhir_response(bundle)

    @get("/AuditEvent/{record_id:str}", opt={"scopes": ["system/AuditEvent.r"]})
    async def read_audit_event(
        self, request: Request[Any, Any, Any], record_id: FromPath[str]
    ) -> Response[Any]:
        """One audit event, or 404 OperationOutcome."""
        check_accept(request)
        record = await AuditLog(services_of(request).store).get(record_id)
        if record is None:
            raise NotFound(f"AuditEvent/{record_id[:64]} is not known")
        return fhir_response(audit_event(record, base_url(request)))
