"""Metrics, structured logs with correlation ids, and the health endpoints."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

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


class HttpMetricsMiddleware:
    """ASGI middleware: latency histogram by route template, and the correlation id (taken from
    the request's x-correlation-id or made up, set for the work the request causes and sent
    back in the answer's header).

    Plain ASGI rather than ``app.middleware("http")`` (Starlette's BaseHTTPMiddleware), which
    runs every request through an extra task and memory streams.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import uuid

        cid = None
        for name, value in scope.get("headers") or ():
            if name == b"x-correlation-id":
                cid = value.decode("latin-1")
                break
        cid = cid or str(uuid.uuid4())
        token = correlation_id_var.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers") or ()
                           if k.lower() != b"x-correlation-id"]
                headers.append((b"x-correlation-id", cid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            HTTP_LATENCY.labels(scope.get("method", ""), template, str(status)).observe(
                time.perf_counter() - started)
            correlation_id_var.reset(token)


def http_metrics_middleware() -> Callable:
    """The same as :class:`HttpMetricsMiddleware` for ``app.middleware("http")`` (slower: the
    host uses the class)."""
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


# Service gauges, computed when /metrics is scraped (issue 10) ---------------------------------
# Kafka-side consumer lag: committed offset of the group vs the partition's end offset. Every
# replica of a service reports the whole group's lag, so aggregate with max(), not sum().
CONSUMER_LAG = Gauge(
    "homecare_consumer_lag", "Records not yet consumed by the group (end offset - committed)",
    ["group", "topic", "partition"],
)
DEAD_LETTER_RECORDS = Gauge(
    "homecare_dead_letter_records",
    "Records kept in a dead-letter topic, from the broker (survives restarts, unlike the counter)",
    ["topic"],
)
CONSUMER_LAG_UP = Gauge(
    "homecare_consumer_lag_up", "1 when the last consumer-lag measurement reached the broker",
)
ALERTS_OPEN = Gauge(
    "homecare_alerts_open", "Dispatch alerts not yet acknowledged", ["area", "kind"],
)
UNASSIGNED_VISITS = Gauge(
    "homecare_unassigned_visits",
    "Orders the router could not place, for today and tomorrow (area's local time)", ["area"],
)
ENTITLEMENT_MINUTES = Gauge(
    "homecare_entitlement_minutes",
    "Minutes on elders' entitlement accounts this month: held (pending) and posted (used)",
    ["state"],
)
ROUTER_SOLVE_SECONDS = Histogram(
    "homecare_router_solve_seconds", "Wall time of one routing solve", ["area", "kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60),
)
ROUTER_OBJECTIVE = Gauge(
    "homecare_router_objective",
    "Terms of the last plan's objective: travel minutes, unassigned and placed visits",
    ["area", "term"],
)
SCRAPE_REFRESH_SECONDS = Gauge(
    "homecare_metrics_refresh_seconds", "Time spent computing the service gauges for a scrape",
)


def record_plan(area: str, plan: object, kind: str = "daily") -> None:
    """Router metrics of one solve; ``plan`` is a dispatch DayPlan (or its summary dict)."""
    def term(name: str, default: float = 0.0) -> float:
        value = plan.get(name, default) if isinstance(plan, dict) else getattr(plan, name, default)
        return float(len(value) if isinstance(value, (dict, list, tuple, set)) else value or 0)

    ROUTER_SOLVE_SECONDS.labels(area, kind).observe(term("solve_seconds"))
    ROUTER_OBJECTIVE.labels(area, "travel_minutes").set(term("travel_minutes"))
    ROUTER_OBJECTIVE.labels(area, "unassigned").set(term("unassigned"))
    placed = "placements" if not isinstance(plan, dict) else "scheduled"
    ROUTER_OBJECTIVE.labels(area, "placed").set(term(placed))


def _partition_offsets(admin: object, topics: list[str]) -> tuple[list[Any], dict, dict]:
    """The topics' partitions with their latest and earliest offsets, from the broker."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    described = admin.describe_topics(topics)  # type: ignore[attr-defined]
    partitions = [TopicPartition(t["name"], p["partition_index"])
                  for t in described for p in t.get("partitions") or ()]
    if not partitions:
        return [], {}, {}
    latest = admin.list_partition_offsets(  # type: ignore[attr-defined]
        {tp: OffsetSpec.LATEST for tp in partitions})
    earliest = admin.list_partition_offsets(  # type: ignore[attr-defined]
        {tp: OffsetSpec.EARLIEST for tp in partitions})
    return partitions, latest, earliest


def measure_consumer_lag(admin: object, groups: dict[str, list[str]]
                         ) -> dict[tuple[str, str, int], int]:
    """Lag per (group, topic, partition) from the broker; sets CONSUMER_LAG.

    ``admin`` is a kafka-python KafkaAdminClient. Uses list_group_offsets and
    list_partition_offsets only (describe_groups fails on tansu). A partition the group never
    committed counts from the partition's earliest offset, as auto_offset_reset=earliest does.
    """
    partitions, latest, earliest = _partition_offsets(
        admin, sorted({t for ts in groups.values() for t in ts}))
    lags: dict[tuple[str, str, int], int] = {}
    for group, group_topics in groups.items():
        committed = admin.list_group_offsets({group: None}).get(group, {})  # type: ignore
        for tp in partitions:
            if tp.topic not in group_topics:
                continue
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else \
                earliest[tp].offset
            lag = max(0, latest[tp].offset - position)
            lags[(group, tp.topic, tp.partition)] = lag
            CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(lag)
    return lags


def measure_topic_records(admin: object, topics: list[str]) -> dict[str, int]:
    """Records per topic (end - earliest offset, summed over partitions); sets
    DEAD_LETTER_RECORDS for the topics given (the dead-letter topics)."""
    partitions, latest, earliest = _partition_offsets(admin, topics)
    records: dict[str, int] = {}
    for tp in partitions:
        records[tp.topic] = records.get(tp.topic, 0) + max(
            0, latest[tp].offset - earliest[tp].offset)
    for topic, count in records.items():
        DEAD_LETTER_RECORDS.labels(topic).set(count)
    return records


def refresh_service_gauges(units: list[object], today: object | None = None) -> None:
    """Compute the per-service gauges from each application's public queries (scrape time)."""
    started = time.perf_counter()
    for unit in units:
        name, app = getattr(unit, "name", ""), getattr(unit, "application", None)
        try:
            if name == "dispatch":
                _refresh_dispatch(app, today)
            elif name == "ledger":
                _refresh_ledger(app, today)
            elif name == "timebank":
                for bank in app.banks():  # type: ignore[union-attr]
                    app.liability(bank)  # type: ignore[union-attr]  # sets its own gauges
        except Exception:  # noqa: BLE001 - a failing gauge must not break the scrape
            logging.getLogger(__name__).exception("metrics refresh failed for %s", name)
    SCRAPE_REFRESH_SECONDS.set(time.perf_counter() - started)


# always exported (as 0 when none is open), so alert rules on them have a series to read
_WATCHED_ALERT_KINDS = ("missed", "late_start", "unassigned")
_alert_kinds_seen: set[tuple[str, str]] = set()


def _areas(app: object) -> list[str]:
    areas = getattr(app, "areas", None)
    if callable(areas):
        return sorted(areas())
    # Until dispatch has a public areas() query: the areas its read model knows elders in.
    app.index.catch_up()  # type: ignore[attr-defined]
    return sorted(getattr(app, "_elders_by_area", {}))


def _refresh_dispatch(app: object, today: object | None) -> None:
    from datetime import date, timedelta

    day0 = today if isinstance(today, date) else datetime.now(app.tz).date()  # type: ignore
    for area in _areas(app):
        by_kind: dict[str, int] = {}
        for alert in app.list_alerts(area, open_only=True):  # type: ignore[attr-defined]
            kind = str(getattr(alert.kind, "value", alert.kind))
            by_kind[kind] = by_kind.get(kind, 0) + 1
        # kinds seen open before go back to 0 rather than keeping their last count
        _alert_kinds_seen.update((area, k) for k in {*by_kind, *_WATCHED_ALERT_KINDS})
        for seen_area, kind in list(_alert_kinds_seen):
            if seen_area == area:
                ALERTS_OPEN.labels(area, kind).set(by_kind.get(kind, 0))
        unassigned = 0
        for offset in range(2):  # each order is loaded: keep the scrape cheap
            orders = app.list_orders(area, day0 + timedelta(days=offset))  # type: ignore
            unassigned += sum(1 for o in orders
                              if str(getattr(o.state, "value", o.state)) == "unassigned")
        UNASSIGNED_VISITS.labels(area).set(unassigned)


def _refresh_ledger(app: object, today: object | None) -> None:
    from datetime import date

    day0 = today if isinstance(today, date) else datetime.now(app.tz).date()  # type: ignore
    month = f"{day0.year:04d}-{day0.month:02d}"
    held, posted = app.entitlement_minutes(month)  # type: ignore[attr-defined]
    ENTITLEMENT_MINUTES.labels("held").set(held)
    ENTITLEMENT_MINUTES.labels("posted").set(posted)


class MetricsRefresher:
    """Recomputes the scrape-time gauges (service gauges and consumer lag), at most once per
    ``min_interval_s`` however often /metrics is scraped. Blocking: call it from a thread."""

    def __init__(self, units: list[object], min_interval_s: float = 2.0) -> None:
        import threading

        self.units = units
        self.min_interval_s = min_interval_s
        self.bootstrap_servers: str | None = None
        self.groups: dict[str, list[str]] = {}
        self._admin: object | None = None
        self._last = float("-inf")
        self._lock = threading.Lock()

    def watch_consumers(self, bootstrap_servers: str, groups: dict[str, list[str]]) -> None:
        """Measure the lag of these consumer groups (group -> topics) on this broker."""
        self.bootstrap_servers = bootstrap_servers
        self.groups = {g: sorted(ts) for g, ts in groups.items()}

    def refresh(self, force: bool = False) -> None:
        with self._lock:
            if not force and time.monotonic() - self._last < self.min_interval_s:
                return
            refresh_service_gauges(self.units)
            self._refresh_lag()
            self._last = time.monotonic()

    def _refresh_lag(self) -> None:
        if not self.bootstrap_servers or not self.groups:
            return
        try:
            if self._admin is None:
                from kafka.admin import KafkaAdminClient

                self._admin = KafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers, client_id="homecare-metrics",
                    # short: a scrape must answer even while the broker is away
                    bootstrap_timeout_ms=3000, request_timeout_ms=5000)
            measure_consumer_lag(self._admin, self.groups)
            from contracts.topics import dlq

            measure_topic_records(self._admin, sorted({dlq(t) for ts in self.groups.values()
                                                       for t in ts}))
            CONSUMER_LAG_UP.set(1)
        except Exception as error:  # noqa: BLE001 - broker away: report it, reconnect later
            logging.getLogger(__name__).warning("consumer lag not measured: %r", error)
            CONSUMER_LAG_UP.set(0)
            self.close()

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()  # type: ignore[attr-defined]


def metrics_app(refresher: MetricsRefresher) -> Callable:
    """The prometheus ASGI app, refreshing the scrape-time gauges before each exposition."""
    import asyncio

    from prometheus_client import make_asgi_app

    exposition = make_asgi_app()

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope.get("type") == "http":
            await asyncio.to_thread(refresher.refresh)
        await exposition(scope, receive, send)

    return app
