"""Runs one or more services in a process: HTTP, consumers, outbox relays, health and metrics.

`homecare up` runs all three in one process on one port; in production each service runs alone
with the same code (`homecare up --services ledger`), scaled out by partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from contracts.topics import ALL_TOPICS, DEFAULT_PARTITIONS, DLQ_TOPICS
from services.runtime.access import check_every_route_guarded, install_auth
from services.runtime.aggregate_cache import UnitOfWorkMiddleware, unit_of_work
from services.runtime.audit import acting_as, task_actor
from services.runtime.auth import Auth, auth_from_settings
from services.runtime.consumer import IdempotentConsumer
from services.runtime.eventstore import ServiceApplication
from services.runtime.messaging import (
    BrokerPublisher,
    MessagingSpec,
    OffsetCommits,
    declare_publications,
    make_broker,
    subscribe,
)
from services.runtime.observability import HttpMetricsMiddleware, MetricsRefresher, metrics_app
from services.runtime.outbox import OutboxRelay
from services.runtime.pgstore import relay_lease
from services.runtime.settings import SharedSettings

log = logging.getLogger(__name__)


@dataclass
class ServiceUnit:
    """One service as the host sees it."""

    name: str
    application: ServiceApplication
    router: APIRouter
    messaging: MessagingSpec
    error_types: dict[int, tuple[type[Exception], ...]]


# The cyclic garbage collector's generation sizes: Python's (700, 10, 10) ran a full
# collection over every cached aggregate and read-model entry every few hundred requests, a
# quarter of a check-in's CPU at 300/s (3.4 -> 2.6 ms per check-in, p99 364 -> 164 ms). Most
# garbage here is freed by reference counting at once; cycles wait a little longer.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collection() -> None:
    """Collect less often, and never again look at what start-up built (modules, settings,
    routes: gc.freeze)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Host:
    def __init__(self, units: list[ServiceUnit], settings: SharedSettings,
                 bootstrap_servers: str | None = None, close_stores: bool = True) -> None:
        """``close_stores``: stop() closes the applications' event stores (their connection
        pools cannot be opened again). A host whose lifespan may be started again on the same
        units passes False and closes them itself: schemathesis' pytest plugin ends every ASGI
        lifespan at each test's teardown and the next test's first request starts it again; with
        the stores closed, every one of them read "unreachable" (PoolClosed) while the
        broker, started again, was fine."""
        self.units = units
        self.close_stores = close_stores
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers or settings.kafka_bootstrap_servers
        # The broker log that consumer and relay positions belong to (settings.broker_log_id;
        # the local broker's incarnation when this host starts one).
        self.log_id: str | None = settings.broker_log_id or None
        self.local_broker: Any = None
        self.broker: Any = None
        self.relays: list[OutboxRelay] = []
        self.consumers: dict[str, IdempotentConsumer] = {}
        self.offset_commits: list[OffsetCommits] = []
        # Whether the log id follows the broker's cluster id while running (see settings).
        self.follows_log = settings.broker_log_from_cluster
        self.log_switches = 0
        self._log_lock = asyncio.Lock()
        self._log_switching = False
        self._stopping = asyncio.Event()
        # Set on SIGTERM (DrainingServer): not ready any more, still serving for a moment.
        self.draining = False
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False
        # Scrape-time gauges: service queries and consumer lag from the broker.
        self.metrics = MetricsRefresher(units)

    # Lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        from services.runtime.broker import LocalBroker
        from services.runtime.topics import ensure_topics

        # Started again after stop() (schemathesis does it between tests): a fresh round.
        self._stopping = asyncio.Event()
        self._tasks, self.relays, self.consumers = [], [], {}
        self.offset_commits = []
        if not self.bootstrap_servers:
            self.local_broker = LocalBroker(log_dir=self.settings.data_dir)
            await asyncio.to_thread(self.local_broker.start)
            self.bootstrap_servers = self.local_broker.bootstrap_servers
            # Its log is in memory: a new one on every start. Positions in the last one mean
            # nothing here, so consumers and relays track this log under its own name (the
            # relays publish the outbox again, the consumers' inboxes drop what they had).
            self.log_id = self.local_broker.incarnation
            self.follows_log = True
            log.info("started local tansu broker",
                     extra={"bootstrap": self.bootstrap_servers, "broker_log": self.log_id})
        # Waits up to 30 s for the broker (it may be restarting).
        await asyncio.to_thread(ensure_topics, self.bootstrap_servers, _topic_specs(), 30.0)
        if self.follows_log and self.local_broker is None:
            self.log_id = await asyncio.to_thread(self._broker_log_id)
            log.info("tracking positions in the broker's log", extra={"broker_log": self.log_id})

        names = "+".join(u.name for u in self.units)
        self.broker = make_broker(self.bootstrap_servers, self.settings, f"homecare-{names}")
        publisher = BrokerPublisher(self.broker)
        for unit in self.units:
            declare_publications(self.broker, unit.name, unit.messaging.publishes)
            spec = unit.messaging.consumer
            if spec is None:
                continue
            handlers = {t: h for by_type in spec.handlers_by_topic.values()
                        for t, h in by_type.items()}
            group = spec.group.replace("homecare", self.settings.consumer_group_prefix, 1)
            consumer = IdempotentConsumer(
                unit.application, group, handlers, publisher,
                max_attempts=self.settings.consumer_max_attempts,
                backoff_s=self.settings.consumer_retry_backoff_s,
                after_commit=_exit_now if self.settings.fault_exit_after_commit else None,
                log_id=self.log_id,
                confirm_log=self.confirm_log if self.follows_log else None,
            )
            self.consumers[unit.name] = consumer
            names = sorted(n for types in spec.handlers_by_topic.values() for n in types)
            self.offset_commits.append(subscribe(
                self.broker, consumer, sorted(spec.handlers_by_topic), group, self.settings,
                description=f"{unit.name} consumes " + ", ".join(names),
                confirm_log=self.confirm_log if self.follows_log else None))
        self.metrics.watch_consumers(self.bootstrap_servers, {
            c.name: sorted(u.messaging.consumer.handlers_by_topic)  # type: ignore[union-attr]
            for u in self.units if (c := self.consumers.get(u.name)) is not None})
        await self.broker.start()
        for unit in self.units:
            relay_name = f"outbox-relay:{unit.name}"
            relay = OutboxRelay(unit.application, unit.application.translate, publisher,
                                name=relay_name,
                                poll_interval_s=self.settings.outbox_poll_interval_s,
                                log_id=self.log_id,
                                lease=relay_lease(unit.application, relay_name))
            self.relays.append(relay)
            self._tasks.append(asyncio.create_task(relay.run(self._stopping),
                                                   name=f"relay-{unit.name}"))
            for interval, work in unit.application.periodic_tasks():
                self._tasks.append(asyncio.create_task(
                    self._every(interval, work, task_actor(unit.name, work.__name__)),
                    name=f"periodic-{unit.name}-{work.__name__}"))
        if self.follows_log:
            self._tasks.append(asyncio.create_task(self._watch_log(), name="broker-log-watch"))
        self.started = True
        tune_garbage_collection()

    # The broker's log ----------------------------------------------------------------------
    def _broker_log_id(self) -> str:
        from services.runtime.broker import cluster_id_of, log_id_from_cluster_id

        assert self.bootstrap_servers
        cluster_id = cluster_id_of(self.bootstrap_servers, timeout=2.0)
        if not cluster_id:
            raise ConnectionError("the broker reports no cluster id to name its log by")
        return log_id_from_cluster_id(cluster_id)

    async def confirm_log(self) -> bool:
        """Ask the broker which log it has; if it is not the one positions are tracked in (the
        broker was restarted empty), move to the new one and return True.

        Moving: the topics are created again, consumers track positions under the new log id
        and go back to the start of their partitions (what they processed before is dropped by
        their inboxes), relays publish their whole outbox again into the new log. Raises when
        the broker cannot be asked; nothing changes then.
        """
        async with self._log_lock:
            current = await asyncio.to_thread(self._broker_log_id)
            if current == self.log_id:
                return False
            await self._switch_log(current)
            return True

    async def _switch_log(self, new_log_id: str) -> None:
        from services.runtime.topics import ensure_topics

        old_log_id = self.log_id
        log.warning("the broker's log changed (restarted empty?): %s -> %s; republishing the "
                    "outboxes and consuming again from the start", old_log_id, new_log_id,
                    extra={"broker_log": new_log_id, "previous_broker_log": old_log_id})
        self._log_switching = True
        try:
            assert self.bootstrap_servers
            await asyncio.to_thread(ensure_topics, self.bootstrap_servers, _topic_specs(), 30.0)
            self.log_id = new_log_id
            for consumer in self.consumers.values():
                consumer.log_id = new_log_id
            for relay in self.relays:
                relay.follow(new_log_id)
            for commits in self.offset_commits:
                commits.forget()
            for subscriber in getattr(self.broker, "subscribers", []):
                kafka_consumer = getattr(subscriber, "consumer", None)
                if kafka_consumer is None or not kafka_consumer.assignment():
                    continue  # (re)joining: no committed offsets in a new log, so from 0
                try:
                    await kafka_consumer.seek_to_beginning()
                except Exception:  # noqa: BLE001 - a rebalance took them: from 0 all the same
                    log.info("seek to the beginning skipped", exc_info=True)
            self.log_switches += 1
        finally:
            self._log_switching = False

    async def _ticks(self, interval: float) -> AsyncIterator[None]:
        """Every ``interval`` seconds until the host stops (a stop ends the wait at once)."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            if self._stopping.is_set():
                return
            yield

    async def _watch_log(self) -> None:
        """Every broker_log_check_s: is the broker's log still ours? (Consumers also ask before
        they skip a message as already seen, so a new log is never read under the old name.)"""
        async for _ in self._ticks(self.settings.broker_log_check_s):
            try:
                await self.confirm_log()
            except Exception as error:  # noqa: BLE001 - broker down: asked again next round
                log.info("broker log check failed: %r", error)

    async def _every(self, interval: float, work: Any, actor: str) -> None:
        """Run blocking ``work`` in a thread every ``interval`` seconds until stopping; what it
        changes is stamped as done by ``actor`` (system:<service>.<task>)."""
        async for _ in self._ticks(interval):
            try:
                with acting_as(actor), unit_of_work():
                    await asyncio.to_thread(work)  # the thread inherits the context
            except Exception:  # noqa: BLE001 - a failed round is logged; the next one runs
                log.exception("periodic task %s failed", getattr(work, "__name__", work))

    async def stop(self) -> None:
        """Drain, in this order: the consumers read nothing more, finish the message in hand
        (database and broker commit) and leave their groups; periodic tasks and relays stop;
        each relay then publishes what is still stored (what consumers and periodic tasks wrote
        last, after the relay's last round), so no outbox is left with a backlog; then the
        broker connection, the stores and the local broker close. (uvicorn has finished the
        HTTP requests in flight before the lifespan calls this.)"""
        from services.runtime.broker import leave_group

        async def commit_offsets() -> None:
            for commits in self.offset_commits:
                await commits.flush()

        for subscriber in getattr(self.broker, "subscribers", []) if self.broker else []:
            await _stop_subscriber(subscriber, leave_group, commit_offsets)
        self._stopping.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        for relay in self.relays:
            await _drain(relay, timeout=10)
            relay.close()
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await self.broker.stop()
        for unit in self.units if self.close_stores else ():
            with contextlib.suppress(Exception):
                unit.application.close()
        self.metrics.close()
        if self.local_broker is not None:
            await asyncio.to_thread(self.local_broker.stop)
        self.started = False

    # Health ----------------------------------------------------------------------------------
    async def readiness(self) -> dict[str, Any]:
        """Every event store and the broker reachable, and each relay's outbox backlog.

        Bounded: every check runs at once, each given READINESS_CHECK_TIMEOUT_S (a store that
        does not answer in time is reported not ready, never waited for), on threads of its
        own: asyncio's default executor (6 threads on 2 cores) is shared with the consumers,
        relays, periodic tasks and every request's token check, and under load readiness once
        queued behind them for over 10 s."""
        loop = asyncio.get_running_loop()
        timeout = READINESS_CHECK_TIMEOUT_S
        deadline = loop.time() + timeout + 0.5  # the whole answer, whatever each check takes

        async def in_thread(name: str, call: Any, *args: Any) -> Any:
            try:
                return await asyncio.wait_for(
                    loop.run_in_executor(_READINESS_EXECUTOR, call, *args),
                    max(0.1, deadline - loop.time()))
            except Exception:  # noqa: BLE001 - a check that fails or hangs is a "no"
                log.warning("readiness check %s failed or took over %.1f s", name, timeout,
                            exc_info=True)
                return None

        async def broker() -> bool:
            if self.broker is None or not self.started:
                return False
            try:
                return bool(await asyncio.wait_for(self.broker.ping(timeout=timeout - 0.5),
                                                   timeout))
            except Exception:  # noqa: BLE001
                log.warning("readiness check broker failed", exc_info=True)
                return False

        relays = {relay.app: relay for relay in self.relays}

        async def store(unit: ServiceUnit) -> tuple[bool, int | None]:
            ok = bool(await in_thread(f"{unit.name}_event_store",
                                      unit.application.is_reachable, timeout))
            relay = relays.get(unit.application)
            # The backlog only of a store that answered: its queries retry for long (a thread
            # left waiting on a dead store would hold one of the few readiness threads).
            if not ok or relay is None:
                return ok, None
            return ok, await in_thread(f"{relay.name} backlog", relay.backlog)

        broker_ok, *stores = await asyncio.gather(broker(), *(store(u) for u in self.units))
        checks = {f"{unit.name}_event_store": ok
                  for unit, (ok, _) in zip(self.units, stores, strict=True)}
        checks["broker"] = broker_ok
        if self.draining:  # shutting down: send no new work here
            checks["serving"] = False
        if self.follows_log:  # not while moving to a new broker log
            checks["broker_log"] = self.started and not self._log_switching
        backlog = {relays[unit.application].name: n
                   for unit, (_, n) in zip(self.units, stores, strict=True) if n is not None}
        return {"ready": all(checks.values()), "checks": checks, "outbox_backlog": backlog}


# Each readiness check gets this long (seconds); probes usually allow 1-5 s per request.
READINESS_CHECK_TIMEOUT_S = 2.5
# Readiness checks' own threads (see Host.readiness): a few, since every check is bounded.
_READINESS_EXECUTOR = ThreadPoolExecutor(max_workers=16, thread_name_prefix="readiness")


class ReadinessReport(BaseModel):
    """What /readyz answers, ready (200) or not (503)."""

    ready: bool
    checks: dict[str, bool] = Field(
        description="each event store (<service>_event_store) and the broker: reachable? "
                    "(and broker_log, where positions follow the broker's log: not moving "
                    "to a new one; serving: false once shutting down)")
    outbox_backlog: dict[str, int] = Field(
        description="events stored but not yet published, per outbox relay (left out when "
                    "the store did not answer)")


def _topic_specs() -> list[Any]:
    from services.runtime.topics import TopicSpec

    return [TopicSpec(t, partitions=DEFAULT_PARTITIONS[t]) for t in (*ALL_TOPICS, *DLQ_TOPICS)]


async def _stop_subscriber(subscriber: Any, leave_group: Any,
                           commit_offsets: Callable[[], Awaitable[None]]) -> None:
    """Stop one FastStream subscriber after the message in hand: stop reading, wait for the
    handler (FastStream's graceful_timeout), commit the offsets processed, leave the group (see
    leave_group), then stop."""
    consumer = getattr(subscriber, "consumer", None)
    with contextlib.suppress(Exception):
        subscriber.running = False  # its consume loop reads no further message
        lock = getattr(subscriber, "lock", None)
        if hasattr(lock, "wait_release"):
            await lock.wait_release(getattr(subscriber._outer_config, "graceful_timeout", 15))
    with contextlib.suppress(Exception):
        await commit_offsets()
    if consumer is not None:
        with contextlib.suppress(Exception):
            await leave_group(consumer)
    try:
        await subscriber.stop()
    except Exception:  # noqa: BLE001 - stopping goes on; what is unacknowledged is redelivered
        log.warning("stopping a consumer failed", exc_info=True)


async def _drain(relay: OutboxRelay, timeout: float) -> None:
    """Publish what the relay has not yet published, for up to ``timeout`` seconds (what is
    left is published after the next start)."""
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while asyncio.get_running_loop().time() < deadline:
            if not await asyncio.wait_for(relay.relay_once(),
                                          deadline - asyncio.get_running_loop().time()):
                return
    except Exception:  # noqa: BLE001 - left in the outbox, published after the next start
        log.warning("outbox %s not drained on shutdown", relay.name, exc_info=True)
        return
    log.warning("outbox %s not drained in %.0f s on shutdown", relay.name, timeout)


class DrainingServer(uvicorn.Server):
    """uvicorn, whose first SIGTERM/SIGINT makes the host not ready at once and shuts down
    ``delay_s`` later, still serving meanwhile. uvicorn's own shutdown closes every connection
    whose request it has not started yet: under load, requests a client had sent just before
    the signal (still in the socket, not yet read) got a reset instead of an answer. The delay
    lets them be read; uvicorn then finishes them (timeout_graceful_shutdown) before the
    lifespan drains the host. A second signal stops at once, as uvicorn does."""

    def __init__(self, config: uvicorn.Config, host: Host, delay_s: float = 1.0) -> None:
        super().__init__(config)
        self.host = host
        self.delay_s = delay_s
        self._exit_timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._exit_timer is not None or self.delay_s <= 0:
            super().handle_exit(sig, frame)
            return
        self.host.draining = True
        self._exit_timer = threading.Timer(self.delay_s, super().handle_exit, (sig, frame))
        self._exit_timer.daemon = True
        self._exit_timer.start()


def _exit_now(message: Any) -> None:
    log.error("fault injection: exiting after the database commit of offset %s", message.offset)
    logging.shutdown()
    os._exit(86)


def create_http_app(host: Host, title: str = "homecare", auth: Auth | None = None) -> FastAPI:
    """The HTTP face of the host's services; callers are checked with `auth` (by default what
    the settings say: local tokens or an OpenID Connect provider)."""
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await host.start()
        try:
            yield
        finally:
            await host.stop()

    app = FastAPI(
        title=title, version="0.1.0", lifespan=lifespan,
        description="Home-based elderly care: dispatch, labor-hours ledger and time bank. "
                    "Integration events are documented in AsyncAPI under /asyncapi/{service}.",
    )
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(UnitOfWorkMiddleware)  # a request's reads share one freshness check
    from services.runtime.http import install_error_handlers

    for unit in host.units:
        # The unit's routes themselves, not its router as a branch: FastAPI matches a request
        # through every level of included routers again (see services.system.flat_router).
        app.router.routes.extend(unit.router.routes)
        install_error_handlers(app, not_found=unit.error_types.get(404, ()),
                               conflict=unit.error_types.get(409, ()),
                               unprocessable=unit.error_types.get(422, ()))

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=ReadinessReport, responses={
        503: {"model": ReadinessReport,
              "description": "not ready: an event store or the broker is unreachable or did "
                             "not answer within a few seconds (see checks)"}})
    async def readyz() -> JSONResponse:
        """Readiness: every event store and the broker are reachable (answers within about
        3 s: a check that takes longer counts as not ready)."""
        report = await host.readiness()
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    @app.get("/asyncapi/{service}", tags=["health"])
    async def asyncapi(service: str) -> dict[str, Any]:
        from services.runtime.messaging import asyncapi_document

        for unit in host.units:
            if unit.name == service and host.broker is not None:
                return asyncapi_document(host.broker, service)
        from fastapi import HTTPException

        raise HTTPException(404, f"no service {service} in this process")

    app.mount("/metrics", metrics_app(host.metrics))
    install_auth(app, auth or auth_from_settings(host.settings))
    # Nothing is open by accident: an endpoint that declares no access rule stops the start.
    unguarded = check_every_route_guarded(app)
    if unguarded:
        raise RuntimeError(f"endpoints without an access rule (allow(...)): {unguarded}")
    return app
