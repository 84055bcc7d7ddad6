"""SMART v2 scopes: `system/<Resource>.<cruds>`, `*` for every resource, and what each route needs.

A granted scope covers a needed one when its context is `system`, its resource is the same or
`*`, and its permission letters include the needed ones (`.r` ⊂ `.rs` ⊂ `.cruds`). SMART v1
spellings (`.read`, `.write`, `.*`) are accepted too. A principal holding a `system/*.…` scope
covering the need is an administrator: ownership does not hide other clients' cases from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_SCOPE = re.compile(r"^(system|user|patient)/([A-Za-z*]+)\.([a-z*]+)$")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}

# What the routes ask for (the route table test checks every route has one of these or is public).
CREATE_REPORT = "system/DiagnosticReport.c"
READ_REPORT = "system/DiagnosticReport.r"
REVIEW_REPORT = "system/DiagnosticReport.u"
DELETE_REPORT = "system/DiagnosticReport.d"
STORE_IMAGE = "system/ImagingStudy.c"
READ_IMAGE = "system/ImagingStudy.r"
READ_AUDIT = "system/AuditEvent.r"
READ_METRICS = "system/Observation.r"  # operational metrics (no patient data)
ALL = "system/*.cruds"


def parse(scope: str) -> tuple[str, str, frozenset[str]] | None:
    """(context, resource, permission letters), or None for a malformed scope."""
    match = _SCOPE.match(scope.strip())
    if match is None:
        return None
    context, resource, permissions = match.groups()
    letters = _V1.get(permissions, permissions)
    if not set(letters) <= set("cruds"):
        return None
    return context, resource, frozenset(letters)


def covers(granted: str, needed: str) -> bool:
    """True when the granted scope allows what the needed scope asks."""
    have, want = parse(granted), parse(needed)
    if have is None or want is None or have[0] != "system" or want[0] != "system":
        return False
    return have[1] in ("*", want[1]) and want[2] <= have[2]


def allows(granted: Iterable[str], needed: str) -> bool:
    """True when any granted scope covers the needed one."""
    return any(covers(scope, needed) for scope in granted)


def is_admin(granted: Iterable[str], needed: str) -> bool:
    """True when a wildcard-resource scope covers the need (sees every client's cases)."""
    want = parse(needed)
    return want is not None and any(
        (have := parse(scope)) is not None and have[1] == "*" and covers(scope, needed)
        for scope in granted
    )


def valid(scope: str) -> bool:
    """A well-formed `system/` scope."""
    parsed = parse(scope)
    return parsed is not None and parsed[0] == "system"
