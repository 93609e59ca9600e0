"""Metrics, structured logs with correlation ids, and the health endpoints."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge, Histogram

correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

MESSAGES_CONSUMED = Counter(
    "homecare_messages_consumed_total",
    "Integration events consumed, by outcome",
    ["consumer", "type", "outcome"],
)
DEAD_LETTERS = Counter(
    "homecare_dead_letters_total", "Messages sent to a dead-letter topic", ["consumer", "topic"]
)
OUTBOX_PUBLISHED = Counter(
    "homecare_outbox_published_total", "Integration events published by the outbox relay",
    ["service", "type"],
)
OUTBOX_BACKLOG = Gauge(
    "homecare_outbox_backlog", "Notifications not yet relayed to the broker", ["service"]
)
HTTP_LATENCY = Histogram(
    "homecare_http_request_seconds", "HTTP request latency", ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the correlation id of the work in hand."""

    _skip = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cid = correlation_id_var.get()
        if cid:
            data["correlation_id"] = cid
        for key, value in record.__dict__.items():
            if key not in self._skip and not key.startswith("_"):
                plain = isinstance(value, (str, int, float, bool, type(None)))
                data[key] = value if plain else str(value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def http_metrics_middleware() -> Callable:
    """FastAPI middleware: latency histogram by route template, and the correlation id header."""
    import uuid

    async def middleware(request, call_next):  # type: ignore[no-untyped-def]
        cid = request.headers.get("x-correlation-id") or str(uuid.uuid4())
        token = correlation_id_var.set(cid)
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["x-correlation-id"] = cid
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            HTTP_LATENCY.labels(request.method, template, str(status)).observe(
                time.perf_counter() - started
            )
            correlation_id_var.reset(token)

    return middleware
