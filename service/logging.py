"""structlog JSON logging with request ids and timings, and a PHI guard.

Log events carry ids, sizes, durations, statuses and codes only. Never names, birth dates,
identifiers, image bytes or report text: the `drop_phi_keys` processor removes any key that
looks like one, as a second line of defence behind careful call sites.

Third-party libraries are not careful call sites: WeasyPrint's ".notdef glyph" warning spells
out the text it could not render (a patient's name, the history), pydicom quotes element
values, Pillow and fontTools quote what they parse. `ThirdPartyRedactor` therefore drops
their layout chatter and replaces the message (and traceback) of any other record they log
with a fixed text, keeping only the logger name and level.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

#: Keys that may hold patient data; dropped from every event.
PHI_KEYS = frozenset(
    {
        "name",
        "patient",
        "patient_name",
        "birth_date",
        "birthdate",
        "dob",
        "identifier",
        "patient_id",
        "mrn",
        "history",
        "image",
        "report",
        "text",
        "body",
        "address",
        "phone",
    }
)


#: Loggers whose messages are written by this project or its server and framework.
OWN_LOGGERS = ("service", "skinscreen", "uvicorn", "litestar")
#: Libraries whose records below ERROR are dropped outright (per-glyph and per-table chatter).
CHATTY_LOGGERS = ("weasyprint", "fontTools", "PIL", "pydicom", "py.warnings")
WITHHELD = "third-party log message withheld (it may quote request text)"


def _under(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


class ThirdPartyRedactor(logging.Filter):
    """A handler filter: no third-party record can carry request text into the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _under(record.name, OWN_LOGGERS):
            return True
        if _under(record.name, CHATTY_LOGGERS) and record.levelno < logging.ERROR:
            return False
        record.msg, record.args = WITHHELD, ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def drop_phi_keys(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: remove PHI-looking keys before rendering."""
    for key in list(event_dict):
        if key.lower() in PHI_KEYS:
            event_dict.pop(key)
    return event_dict


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and route stdlib logging (uvicorn, litestar) through it."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        drop_phi_keys,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ThirdPartyRedactor())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # library warnings become `py.warnings` records, filtered above
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger; bind only non-PHI context."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
