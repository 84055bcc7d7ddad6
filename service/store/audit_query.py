"""The audit search filter, one definition for both backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def audit_where(
    mark: str,
    instant: Callable[[str], Any],
    *,
    client: str | None,
    action: str | None,
    since: str | None,
    until: str | None,
) -> tuple[str, list[Any]]:
    """(`WHERE` condition, arguments) with the backend's placeholder `mark` (`?` or `%s`);
    `since` inclusive, `until` exclusive, both read by `instant`."""
    where: list[str] = ["1=1"]
    args: list[Any] = []
    for clause, value in (
        (f"client = {mark}", client),
        (f"action = {mark}", action),
        (f"at >= {mark}", None if since is None else instant(since)),
        (f"at < {mark}", None if until is None else instant(until)),
    ):
        if value is not None:
            where.append(clause)
            args.append(value)
    return " AND ".join(where), args
