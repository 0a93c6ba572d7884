"""The service's logs: readable text by default, one JSON object per line on request.

Every line carries its level, logger and message; structured fields (an access line's route,
status and duration, a rollback's version and reason) ride along as ``extra={"fields": ...}``
and come out as ``key=value`` pairs in text, as keys in JSON, so a log shipper can index them
without parsing the message.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
access = logging.getLogger("banditops.access")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name,
                "message": record.getMessage(), **_fields(record)}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` (values JSON-quoted when they hold
    spaces or quotes, so a line still splits on spaces)."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        pairs = [f"{key}={_plain(value)}" for key, value in _fields(record).items()]
        return " ".join([text, *pairs]) if pairs else text


def _plain(value: Any) -> str:
    """A value as one token: JSON-quoted when it holds a space, quote, '=' or anything not
    printable, so a client's newline or terminal escape can never forge a line."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    quote = not text or not text.isprintable() or any(c in text for c in ' "=')
    return json.dumps(text) if quote else text


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is emitted, not the one at start-up:
    a caller that swaps it (a test runner, an embedding tool) never leaves a closed stream."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send banditops's lines to stderr at ``level`` in ``fmt`` (other libraries': warnings
    and errors, everything with ``debug``)."""
    if level not in LEVELS:
        raise ValueError(f"--log-level must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = _Stderr()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # banditops at the chosen level; other libraries' chatter (HTTP clients, MLflow) only
    # from warnings up, unless debugging
    wanted = logging.getLevelName(level.upper())
    logging.getLogger("banditops").setLevel(wanted)
    root.setLevel(wanted if wanted <= logging.DEBUG else max(wanted, logging.WARNING))
    logging.getLogger("alembic").setLevel(logging.WARNING)  # no plugin chatter at start-up


def log_access(method: str, route: str | None, path: str, status: int, seconds: float,
               params: dict[str, Any], answer: Any = None) -> None:
    """One line per request: method, route (its template), status, duration, deployment,
    version and decision id when the answer names them."""
    if not access.isEnabledFor(logging.INFO):
        return
    fields: dict[str, Any] = {"method": method, "route": route or path, "status": status,
                              "ms": round(1000 * seconds, 2)}
    if "name" in params:  # from the client's URL: bounded here, quoted by the formatter
        fields["deployment"] = str(params["name"])[:100]
    if "version" in params:
        fields["version"] = str(params["version"])[:100]
    if isinstance(answer, dict):
        if "decision_id" in answer:
            fields["version"], fields["decision_id"] = answer.get("version"), answer[
                "decision_id"]
        elif isinstance(answer.get("decisions"), list):
            fields["decisions"] = len(answer["decisions"])
    access.info("request", extra={"fields": fields})
