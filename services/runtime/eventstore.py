"""Event-store configuration and the application base every service builds on.

Local runs keep one SQLite file per service under ``./var/``; production keeps one PostgreSQL
schema per service (or one database, by setting ``<SERVICE>_POSTGRES_DBNAME``). Configuration is
handed to the eventsourcing library as its own environment variables, so the same application
code runs on either store by changing only the environment.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Mapping
from copy import deepcopy
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5
from zoneinfo import ZoneInfo

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    LRUCache,
    ProcessingEvent,
    Recording,
    Repository,
)
from eventsourcing.domain import Aggregate, DomainEvent
from eventsourcing.persistence import (
    IntegrityError,
    Mapper,
    ProcessRecorder,
    Tracking,
    Transcoder,
    Transcoding,
)
from eventsourcing.utils import get_topic, strtobool

from services.runtime.aggregate_cache import ABSENT, LogWatch, TypedLRUCache, fresh_as_of
from services.runtime.audit import AuditedMapper
from services.runtime.cipher import cipher_env
from services.runtime.keystore import SubjectKeys, subject_keys_for
from services.runtime.personal import PersonalFields
from services.runtime.settings import SharedSettings

log = logging.getLogger(__name__)

# Deterministic ids: the same cause always yields the same aggregate id, which is what makes
# redelivered messages collide with what they already created instead of doubling it.
HOMECARE_NAMESPACE = uuid5(NAMESPACE_URL, "https://homecare.example/ids")


def stable_id(*parts: object) -> UUID:
    """A UUID derived from the given parts (stable across processes and runs)."""
    return _stable_id("/".join(str(p) for p in parts))


@lru_cache(maxsize=65536)
def _stable_id(name: str) -> UUID:
    # A request derives the same few ids several times over (SHA-1 each).
    return uuid5(HOMECARE_NAMESPACE, name)


def event_store_env(service: str, settings: SharedSettings | None = None) -> dict[str, str]:
    """eventsourcing settings for one service, from the shared settings.

    Only sets what is not already given in the process environment under the service's own
    prefix, so ``LEDGER_POSTGRES_DBNAME=ledger`` (say) still wins.
    """
    settings = settings or SharedSettings()
    prefix = service.upper()
    env: dict[str, str]
    if settings.store == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(settings.data_dir / f"{service}.sqlite"),
            "SQLITE_LOCK_TIMEOUT": "10",
        }
    else:
        env = {
            # eventsourcing's PostgreSQL store, with events inserted through a database function
            # (about twice the append rate) and tracking kept in the same transaction.
            "PERSISTENCE_MODULE": "services.runtime.pgstore:TrackedPostgresFactory",
            "POSTGRES_DBNAME": settings.postgres_dbname,
            "POSTGRES_HOST": settings.postgres_host,
            "POSTGRES_PORT": str(settings.postgres_port),
            "POSTGRES_USER": settings.postgres_user,
            "POSTGRES_PASSWORD": settings.postgres_password,
            "POSTGRES_SCHEMA": service,
            "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
            "POSTGRES_POOL_SIZE": "5",
            "POSTGRES_MAX_OVERFLOW": "5",
        }
    # Every stored event compressed and encrypted (personal data at rest; see cipher.py).
    env.update(cipher_env(settings))
    return {
        f"{prefix}_{key}": value
        for key, value in env.items()
        if f"{prefix}_{key}" not in os.environ
    }


class DateAsISO(Transcoding):
    """Calendar dates (requested dates, certificate expiry) in the stored events."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class Processing(ProcessingEvent):  # type: ignore[type-arg]
    """eventsourcing's unit of what one command or message saves, collecting from aggregates
    and events by their classes first: the library asks two runtime-checkable protocols per
    object, whose checks walk every attribute (about 13 us a save, a twentieth of an append).
    Anything else still goes through the library's own checks.

    A handler that must decide and write inside an exclusive section (services/runtime/
    sections.py) enters it with :meth:`hold`; the consumer leaves it once what was collected
    is recorded, or not."""

    def __init__(self, tracking: Tracking | None = None) -> None:
        super().__init__(tracking)
        self.sections = contextlib.ExitStack()

    def hold(self, section: contextlib.AbstractContextManager[Any]) -> None:
        """Enter ``section`` until this processing is recorded (or given up)."""
        self.sections.enter_context(section)

    def collect_events(self, *objs: Any, **kwargs: Any) -> None:
        for obj in objs:
            if isinstance(obj, Aggregate):
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            elif isinstance(obj, DomainEvent):
                self.events.append(obj)
            elif obj is not None:
                super().collect_events(obj)
        self.saved_kwargs.update(kwargs)


# Values that are never changed in place: a copy of an aggregate shares them. The standard
# deepcopy rebuilds each datetime and UUID through __reduce_ex__, most of its cost here.
_SHARED = frozenset({str, int, float, bool, type(None), bytes, datetime, date, time, timedelta,
                     timezone, ZoneInfo, UUID, Decimal})


def copy_aggregate(aggregate: Any) -> Any:
    """A deep copy of an aggregate, for a command to change without touching the cached one:
    containers are copied all the way down, immutable values (above, enums, tuples of them)
    shared, anything else left to ``copy.deepcopy``. About a fifth of deepcopy's time for a
    visit, whose 44 attributes hold 11 datetimes."""
    memo: dict[int, Any] = {}
    if hasattr(aggregate, "__deepcopy__") or not hasattr(aggregate, "__dict__"):
        return deepcopy(aggregate, memo)
    new = object.__new__(type(aggregate))
    memo[id(aggregate)] = new
    new.__dict__.update({name: _copied(value, memo) for name, value in vars(aggregate).items()})
    return new


def _copied(value: Any, memo: dict[int, Any]) -> Any:
    kind = type(value)
    if kind in _SHARED or isinstance(value, Enum):
        return value
    if id(value) in memo:  # the same container referenced twice stays one container
        return memo[id(value)]
    if kind is list:
        out: Any = memo.setdefault(id(value), [])
        out.extend(_copied(item, memo) for item in value)
    elif kind is dict:
        out = memo.setdefault(id(value), {})
        out.update((key, _copied(item, memo)) for key, item in value.items())
    elif kind is set:
        out = memo.setdefault(id(value), set())
        out.update(_copied(item, memo) for item in value)
    elif kind is tuple:
        out = tuple(_copied(item, memo) for item in value)
    else:
        out = deepcopy(value, memo)
    return out


def project_events(aggregate: Any, domain_events: Any) -> Any:
    """eventsourcing's ``project_aggregate`` without its ``isinstance`` of every event against
    a runtime-checkable protocol (which walks the protocol's members: 4 % of the ledger's CPU
    in the pipeline's profile, rebuilding aggregates from the store). Every event here is a
    DomainEvent of the library, which mutates."""
    for domain_event in domain_events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


class CopyingRepository(Repository):  # type: ignore[type-arg]
    """eventsourcing's repository, copying cached aggregates for commands with
    :func:`copy_aggregate` instead of ``copy.deepcopy``; with a ``watch``, cached aggregates
    are kept fresh by following the notification log instead of fast-forwarded one by one
    (services/runtime/aggregate_cache.py)."""

    watch: LogWatch | None = None

    def get(self, aggregate_id: Any, *, version: int | None = None,
            deepcopy_from_cache: bool = True, **kwargs: Any) -> Any:
        copy = (deepcopy_from_cache and self.deepcopy_from_cache and self.cache is not None
                and version is None)
        if self.watch is not None and version is None and not kwargs:
            aggregate = self._watched(aggregate_id)
        else:
            kwargs.setdefault("projector_func", project_events)
            aggregate = super().get(aggregate_id, version=version, deepcopy_from_cache=False,
                                    **kwargs)
        return copy_aggregate(aggregate) if copy else aggregate

    def _watched(self, aggregate_id: Any) -> Any:
        watch = self.watch
        assert watch is not None
        watch.check(fresh_as_of())
        with contextlib.suppress(KeyError):
            cached = watch.cache.get(aggregate_id)
            if cached is ABSENT:
                raise AggregateNotFoundError(aggregate_id)
            return cached
        position = watch.position
        try:
            aggregate = self._reconstruct_aggregate(aggregate_id, None, project_events)
        except AggregateNotFoundError:
            watch.cache_read(aggregate_id, ABSENT, position)
            raise
        watch.cache_read(aggregate_id, aggregate, position)
        return aggregate


class ServiceApplication(Application):
    """An eventsourcing application whose recorder also keeps tracking records.

    Tracking records are what the outbox relay and the idempotent consumer write in the same
    transaction as the events they cause (effectively-once processing).

    ``personal_data`` names the events carrying personal attributes (event class -> which
    attributes, whose): those are encrypted per person before storing (services/runtime/
    personal.py), with keys in ``subject_keys`` beside the events, so :meth:`erase_subject`
    can crypto-shred one person. Every stored event also records who caused it (the audit
    stamp, services/runtime/audit.py), out of the domain's sight.
    """

    personal_data: dict[type | str, PersonalFields] = {}
    # Whether cached aggregates are kept fresh by following the notification log (one round
    # trip per unit of work) rather than fast-forwarded one by one ("n" turns it off).
    AGGREGATE_CACHE_FOLLOWS_LOG = "AGGREGATE_CACHE_FOLLOWS_LOG"
    # With AGGREGATE_CACHE_MAXSIZE set: when not empty, only aggregates of these classes are
    # cached (keep out those holding personal data sealed per person: an erased person's
    # decrypted data would otherwise stay in memory).
    cached_aggregates: tuple[type, ...] = ()

    # How many just-saved aggregate states the outbox relay may find (saved_state).
    saved_states_kept = 1000

    def __init__(self, env: Mapping[str, Any] | None = None) -> None:
        self._saved_states: LRUCache = LRUCache(self.saved_states_kept)  # type: ignore[type-arg]
        # Recently written or read events by notification id: the read models, the outbox
        # relay and every open event stream decode the same new events from the log, each
        # decompressing, decrypting and parsing them again. Events holding personal data
        # sealed per person are never kept (an erased person's data must not linger).
        self._decoded: LRUCache = LRUCache(self.saved_states_kept)  # type: ignore[type-arg]
        super().__init__(env=dict(env) if env else None)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording]:  # type: ignore[type-arg]
        """As eventsourcing's save, collecting with :class:`Processing`."""
        processing = Processing()
        processing.collect_events(*objs, **kwargs)
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        self.notify(processing.events)  # the library's deprecated hook, kept for parity
        return recordings

    def construct_mapper(self) -> Mapper:  # type: ignore[type-arg]
        cipher = self.factory.cipher()
        self.subject_keys: SubjectKeys = subject_keys_for(self.factory, cipher, self.name)
        return AuditedMapper(transcoder=self.construct_transcoder(),
                             compressor=self.factory.compressor(), cipher=cipher,
                             personal=self.personal_data, keys=self.subject_keys,
                             service=self.name.lower())

    def _record(self, processing: ProcessingEvent) -> list[Recording]:  # type: ignore[type-arg]
        try:
            recordings = super()._record(processing)
        except IntegrityError:
            # Another writer got there first: what this command read is stale; the retry (or
            # the next request) reads it again from the store.
            if isinstance(self.repository.cache, TypedLRUCache):
                for aggregate_id in processing.aggregates:
                    self.repository.cache.evict(aggregate_id)
            raise
        for recording in recordings:
            if not self._personal(recording.domain_event):
                self._decoded.put(recording.notification.id, recording.domain_event)
        cache = self.repository.cache
        events_of: dict[Any, list[Any]] = {}
        for domain_event in processing.events:
            events_of.setdefault(domain_event.originator_id, []).append(domain_event)
        for aggregate_id, aggregate in processing.aggregates.items():
            if self.cached_aggregates and not isinstance(aggregate, self.cached_aggregates):
                if isinstance(cache, TypedLRUCache):
                    cache.evict(aggregate_id)  # its absence, if that was cached
                continue
            # Several events of one aggregate saved together (a check-out verified at once):
            # the relay translates each by the state right after it; kept here too.
            self._keep_earlier_states(aggregate_id, events_of.get(aggregate_id, [])[:-1])
            # The state just saved is the next command's starting point: cached (a copy, so
            # nothing the caller still does to its object reaches the cache) instead of replayed
            # from the store on the next read, which the library does with fast-forward on.
            if cache is not None and self.repository.fastforward:
                cache.put(aggregate_id, copy_aggregate(aggregate))
            # ... and what the outbox relay reads to translate the events just saved.
            self._saved_states.put((aggregate_id, aggregate.version), copy_aggregate(aggregate))
        return recordings

    def _keep_earlier_states(self, aggregate_id: Any, earlier: list[Any]) -> None:
        """The states right after each of ``earlier`` (all but the last event of the aggregate
        just saved), from the cached state before them: no replay from the store for the
        relay. Nothing is kept when the cache does not hold exactly the state before them."""
        if not earlier:
            return
        state = None
        if earlier[0].originator_version > 1:
            cache = self.repository.cache
            before = cache.peek(aggregate_id) if isinstance(cache, TypedLRUCache) else None
            if before is None or before.version != earlier[0].originator_version - 1:
                return
            state = copy_aggregate(before)
        for domain_event in earlier:
            state = domain_event.mutate(state)
            self._saved_states.put((aggregate_id, domain_event.originator_version),
                                   copy_aggregate(state))

    def domain_event_of(self, notification: Any) -> Any:
        """The domain event a notification of this application's log holds (shared: read it,
        never change it)."""
        try:
            return self._decoded.get(notification.id)
        except KeyError:
            pass
        domain_event = self.mapper.to_domain_event(notification)
        if not self._personal(domain_event):
            self._decoded.put(notification.id, domain_event)
        return domain_event

    def _personal(self, domain_event: Any) -> bool:
        kind = type(domain_event)
        return kind in self._personal_kinds or get_topic(kind) in self._personal_kinds

    @functools.cached_property
    def _personal_kinds(self) -> frozenset[Any]:
        return frozenset(self.personal_data)

    def saved_state(self, aggregate_id: UUID, version: int) -> Any:
        """The aggregate as this process saved it at exactly that version, if still kept (a
        bounded number are), else None. Read only: it is shared."""
        try:
            return self._saved_states.get((aggregate_id, version))
        except KeyError:
            return None

    def construct_repository(self) -> Repository:  # type: ignore[type-arg]
        # As the library constructs it (same settings), as a CopyingRepository.
        maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        repository = CopyingRepository(
            event_store=self.events, snapshot_store=self.snapshots,
            cache_maxsize=int(maxsize) if maxsize else None,
            fastforward=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD, "y")),
            fastforward_skipping=strtobool(
                self.env.get(self.AGGREGATE_CACHE_FASTFORWARD_SKIPPING, "n")),
            deepcopy_from_cache=strtobool(self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE, "y")))
        if isinstance(repository.cache, LRUCache):
            repository.cache = TypedLRUCache(repository.cache.maxsize,
                                             self.cached_aggregates or (object,))
            if strtobool(self.env.get(self.AGGREGATE_CACHE_FOLLOWS_LOG, "y")):
                repository.watch = LogWatch(self.recorder, repository.cache)
        return repository

    def erase_subject(self, subject: str) -> bool:
        """Crypto-shred one person: delete their data key (True when there was one)."""
        return self.subject_keys.delete(subject)

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    def construct_recorder(self) -> ProcessRecorder:  # type: ignore[override]
        return self.factory.process_recorder()

    @property
    def process_recorder(self) -> ProcessRecorder:
        recorder = self.recorder
        assert isinstance(recorder, ProcessRecorder)
        return recorder

    def periodic_tasks(self) -> list[tuple[float, Any]]:
        """(interval in seconds, blocking callable) pairs the host runs in the background."""
        return []

    def get_or_none(self, aggregate_id: UUID) -> Any:
        """The aggregate, or None when it was never created."""
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def peek(self, aggregate_id: UUID) -> Any:
        """The aggregate to read, not to change (None when it was never created): a cached
        aggregate is fast-forwarded but not copied. The copy that :meth:`get_or_none` makes for
        commands (so a command failing half-way leaves the cache as it was) is most of a cached
        read: 80 of 131 us for a visit. Never call a command method on what this returns."""
        try:
            return self.repository.get(aggregate_id, deepcopy_from_cache=False)
        except AggregateNotFoundError:
            return None

    def is_reachable(self, timeout_s: float = 2.0) -> bool:
        """True when the event store answers a trivial query within about ``timeout_s``
        (used by /readyz). Never retries: the recorder's own queries retry a failed connection
        ten times and wait up to 30 s for a pooled one, which would hold readiness for minutes
        exactly when it matters. What went wrong is logged at WARNING."""
        try:
            from psycopg_pool import ConnectionPool

            pool = getattr(getattr(self.process_recorder, "datastore", None), "pool", None)
            if isinstance(pool, ConnectionPool):  # PostgreSQL
                pool.open()  # as the recorder does on first use (no-op when open)
                with pool.connection(timeout=timeout_s) as conn, conn.transaction():
                    conn.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
                    conn.execute("SELECT 1")
            else:  # SQLite: a local file; its lock timeout bounds the wait
                self.process_recorder.max_notification_id()
        except Exception:  # noqa: BLE001 - any failure means not ready
            log.warning("%s event store unreachable", self.name, exc_info=True)
            return False
        return True


def ensure_postgres_schema(service: str, settings: SharedSettings | None = None) -> None:
    """Create the database and the service's schema if missing (eventsourcing creates tables,
    not databases or schemas)."""
    import psycopg
    from psycopg import sql

    settings = settings or SharedSettings()
    prefix = service.upper()
    dbname = os.environ.get(f"{prefix}_POSTGRES_DBNAME", settings.postgres_dbname)
    schema = os.environ.get(f"{prefix}_POSTGRES_SCHEMA", service)
    conninfo = dict(
        host=settings.postgres_host,
        port=settings.postgres_port,
        user=settings.postgres_user,
        password=settings.postgres_password or None,
        connect_timeout=10,
    )
    with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            # Another service may create it first.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    if schema:
        with psycopg.connect(dbname=dbname, autocommit=True, **conninfo) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
