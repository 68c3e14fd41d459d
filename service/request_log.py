"""Request ids and the one structured line per request (IMGCLF_LOG_FORMAT=json), for every transport."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from typing import Any

access = logging.getLogger("imgclf.access")
_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("imgclf_request", default=None)
_SAFE_ID = re.compile(r"^[\w.:@/+=-]{1,128}$")
# Set by configure(), not as `access.disabled`: uvicorn's dictConfig (disable_existing_loggers=False)
# sets `disabled = False` on every logger it finds, which turned text logs into a bare
# "imgclf.access: request" line per request.
_access_lines = False


def request_id(given: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, else a new one."""
    return given if given and _SAFE_ID.match(given) else uuid.uuid4().hex


def begin(rid: str, protocol: str, route: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"request_id": rid, "protocol": protocol, "route": route,
                             "started": time.perf_counter()}
    _current.set(entry)
    return entry


def note(**fields: Any) -> None:
    """Add what the core learns (model, version, images, batch size) to the current request's line."""
    entry = _current.get()
    if entry is not None:
        entry.update(fields)


def end(entry: dict[str, Any], status: int | str) -> None:
    if not _access_lines or not access.isEnabledFor(logging.INFO):
        return
    fields = {k: v for k, v in entry.items() if k != "started"}
    fields["status"] = status
    fields["latency_ms"] = round((time.perf_counter() - entry["started"]) * 1000, 2)
    access.info("request", extra={"fields": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                               "level": record.levelname.lower(), "logger": record.name,
                               "message": record.getMessage()}
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str, fmt: str) -> None:
    """Root logging for `imgclf serve`: text as before, or JSON lines with one access line per request."""
    global _access_lines
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
        handler.formatter.converter = time.gmtime  # type: ignore[union-attr]
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    _access_lines = fmt == "json"  # text logs stay as they were: no line per request
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own lines in the same format
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
