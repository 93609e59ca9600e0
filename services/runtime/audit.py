"""The audit trail: who caused every stored event, and when, readable per elder.

Each event is stamped at write time, in the same stored record (so the stamp is as atomic and
immutable as the event itself), with

- ``actor``: the HTTP caller (``role:subject`` of the token, see ``Principal.actor``), or what a
  process declared with :func:`acting_as` — ``system:<service>-consumer`` for changes a consumer
  made, ``system:<service>.<task>`` for periodic tasks — or ``system:<service>`` for changes the
  service made on its own outside any request, message or task (start-up seeding);
- ``cause``: for consumers, the integration event that caused the change (``<type>:<event id>``);
- ``correlation_id``: the request's or message's correlation id, when there is one.

The stamp lives under the key ``_audit`` in the stored state; :class:`AuditedMapper` adds it and
strips it again when events are read, so aggregates (the pure domain) never see it.
:meth:`AuditedMapper.audit_entry` reads a stored event for the trail WITHOUT opening any personal
field (personal data is named, never shown: an erased elder's trail stays readable and empty of
their data). :class:`AuditIndex` follows the service's notification log to know which aggregates
belong to which elder, and :func:`elder_trail` gives an elder's whole trail in time order.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import io
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Cipher, Compressor, Mapper, StoredEvent, Transcoder

from services.runtime.auth import current_principal
from services.runtime.keystore import SubjectKeys
from services.runtime.observability import correlation_id_var
from services.runtime.personal import PersonalDataMapper, PersonalFields, is_sealed

AUDIT_KEY = "_audit"
# Events written before the trail existed carry no stamp.
UNRECORDED = "unrecorded"


@dataclass(frozen=True)
class Acting:
    """Who a process is acting as, outside an HTTP request (or in place of its caller)."""

    actor: str
    cause: str | None = None


_acting: contextvars.ContextVar[Acting | None] = contextvars.ContextVar("acting", default=None)


@contextlib.contextmanager
def acting_as(actor: str, cause: str | None = None) -> Iterator[Acting]:
    """Events stored inside this block name ``actor`` (and ``cause``) as who caused them.

    Context-local: threads started with ``asyncio.to_thread`` (which copies the context) inside
    the block act the same way; other tasks are unaffected.
    """
    acting = Acting(actor, cause)
    token = _acting.set(acting)
    try:
        yield acting
    finally:
        _acting.reset(token)


def consumer_actor(service: str) -> str:
    return f"system:{service}-consumer"


def task_actor(service: str, task: str) -> str:
    return f"system:{service}.{task}"


def current_stamp(default_actor: str) -> dict[str, str]:
    """The stamp for an event stored now: explicit acting_as, else the HTTP caller, else the
    service itself."""
    acting = _acting.get()
    principal = current_principal.get()
    if acting is not None:
        stamp = {"actor": acting.actor}
        if acting.cause:
            stamp["cause"] = acting.cause
    elif principal is not None:
        stamp = {"actor": principal.actor}
    else:
        stamp = {"actor": default_actor}
    correlation_id = correlation_id_var.get()
    if correlation_id:
        stamp["correlation_id"] = correlation_id
    return stamp


@dataclass(frozen=True)
class AuditEntry:
    """One stored event as the trail shows it."""

    time: str
    actor: str
    cause: str | None
    correlation_id: str | None
    aggregate_type: str
    aggregate_id: str
    record_id: str | None  # the domain's own id of the aggregate (visit id, order id...)
    event_type: str
    version: int
    summary: str

    def row(self) -> dict[str, Any]:
        return asdict(self)


# Fields of every event that say nothing about what changed.
_BOOKKEEPING = {"originator_id", "originator_version", "timestamp", AUDIT_KEY, "class_version",
                "originator_topic"}
PERSONAL = "(personal)"
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _short(value: Any, limit: int = 40) -> str:
    if is_sealed(value):
        return PERSONAL
    if isinstance(value, Mapping):
        text = "{" + ", ".join(sorted(str(k) for k in value)) + "}"
    elif isinstance(value, list | tuple | set | frozenset):
        text = f"[{len(value)} items]" if len(value) > 3 else str(list(value))
    elif isinstance(value, datetime):
        text = value.isoformat()
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarise(state: Mapping[str, Any], personal: Iterable[str] = (), limit: int = 240) -> str:
    """``field=value`` for what the event set, personal fields named but not shown."""
    secret = set(personal)
    parts = []
    for name, value in state.items():
        if name in _BOOKKEEPING or value is None:
            continue
        parts.append(f"{name}={PERSONAL if name in secret else _short(value)}")
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def record_id_of(aggregate_type: str, state: Mapping[str, Any]) -> str | None:
    """The aggregate's own id in the domain, when its event names it (``visit_id`` of a Visit,
    ``code`` of an account, ``key`` of a transfer...)."""
    snake = _CAMEL.sub("_", aggregate_type).lower()
    for name in (f"{snake}_id", snake.rsplit("_", 1)[-1] + "_id", "code", "key"):
        value = state.get(name)
        if isinstance(value, str):
            return value
    return next((value for name, value in state.items()
                 if name.endswith("_id") and name != "service_area_id"
                 and isinstance(value, str)), None)


_ELDER_ACCOUNT = re.compile(r"^elder:([^:]+):")


def elders_named(state: Mapping[str, Any]) -> set[str]:
    """The elders an event is about: its ``elder_id``, and the owners of elder accounts
    (``elder:<id>:...``) it names (a ledger account, either side of a transfer)."""
    found = set()
    elder = state.get("elder_id")
    if isinstance(elder, str) and elder:
        found.add(elder)
    for value in state.values():
        if isinstance(value, str) and (match := _ELDER_ACCOUNT.match(value)):
            found.add(match.group(1))
    return found


class AuditedMapper(PersonalDataMapper):
    """The service's mapper (personal fields sealed per person, see personal.py), plus the
    audit stamp of every stored event."""

    def __init__(
        self,
        transcoder: Transcoder,
        compressor: Compressor | None = None,
        cipher: Cipher | None = None,
        *,
        personal: Mapping[type | str, PersonalFields] | None = None,
        keys: SubjectKeys,
        service: str,
    ) -> None:
        super().__init__(transcoder, compressor, cipher, personal=personal, keys=keys)
        self.service = service
        self.default_actor = f"system:{service}"

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        # A copy carries the stamp: the event the application holds is left as it was.
        stamped = object.__new__(type(domain_event))
        object.__setattr__(stamped, "__dict__", {**vars(domain_event),
                                                 AUDIT_KEY: current_stamp(self.default_actor)})
        return super().to_stored_event(stamped)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        domain_event = super().to_domain_event(stored_event)
        domain_event.__dict__.pop(AUDIT_KEY, None)
        return domain_event

    def _sealed_state(self, stored_event: StoredEvent) -> dict[str, Any]:
        """The stored state as written: personal fields still sealed (never opened here)."""
        event = Mapper.to_domain_event(self, stored_event)
        return dict(event.__dict__)

    def audit_entry(self, stored_event: StoredEvent, record_id: str | None = None) -> AuditEntry:
        state = self._sealed_state(stored_event)
        stamp = state.get(AUDIT_KEY) or {}
        aggregate_type, _, event_type = stored_event.topic.rpartition(":")[2].rpartition(".")
        spec = self.personal.get(stored_event.topic)
        timestamp = state.get("timestamp")
        return AuditEntry(
            time=timestamp.isoformat() if isinstance(timestamp, datetime) else str(timestamp),
            actor=stamp.get("actor", UNRECORDED),
            cause=stamp.get("cause"),
            correlation_id=stamp.get("correlation_id"),
            aggregate_type=aggregate_type or event_type,
            aggregate_id=str(stored_event.originator_id),
            record_id=record_id or record_id_of(aggregate_type, state),
            event_type=event_type,
            version=int(stored_event.originator_version),
            summary=summarise(state, spec.fields if spec else ()),
        )


class AuditIndex:
    """Which aggregates belong to which elder, following the service's notification log.

    An aggregate belongs to an elder once any of its events names the elder (see
    :func:`elders_named`), or names by id (``*_account_id``) an account that belongs to the
    elder (the transfers of a double-entry ledger). Built on first use by reading the log once
    (events decrypted, personal fields left sealed), then kept up to date at every query.
    """

    def __init__(self, recorder: Any, mapper: AuditedMapper, batch_size: int = 1000) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.batch_size = batch_size
        self.position = 0
        self._aggregates: dict[str, dict[UUID, None]] = {}  # elder -> ordered set of ids
        self._areas: dict[str, str] = {}
        self._owners: dict[UUID, set[str]] = {}  # elder-owned aggregate -> elders
        self._lock = threading.Lock()

    def catch_up(self) -> None:
        with self._lock:
            while True:
                notifications = self.recorder.select_notifications(self.position + 1,
                                                                   self.batch_size)
                for notification in notifications:
                    state = self.mapper._sealed_state(notification)
                    elders = elders_named(state)
                    for name, value in state.items():
                        if (name.endswith("_account_id") and isinstance(value, UUID)
                                and value in self._owners):
                            elders |= self._owners[value]
                    if elders and ":Account." in notification.topic:
                        self._owners.setdefault(notification.originator_id, set()).update(elders)
                    for elder in elders:
                        self._aggregates.setdefault(elder, {})[notification.originator_id] = None
                        area = state.get("service_area_id")
                        if isinstance(area, str) and state.get("elder_id") == elder:
                            self._areas[elder] = area
                    self.position = notification.id
                if len(notifications) < self.batch_size:
                    return

    def aggregates_of(self, elder_id: str) -> list[UUID]:
        self.catch_up()
        return list(self._aggregates.get(elder_id, ()))

    def area_of(self, elder_id: str) -> str | None:
        """The service area the elder's records say they live in (None: unknown here)."""
        self.catch_up()
        return self._areas.get(elder_id)


def audit_index(app: Any) -> AuditIndex:
    """The application's audit index (made on first use)."""
    index = getattr(app, "_audit_index", None)
    if index is None:
        index = AuditIndex(app.recorder, app.mapper)
        app._audit_index = index
    return index


def elder_trail(app: Any, elder_id: str) -> list[AuditEntry]:
    """Every event of every aggregate belonging to the elder, oldest first."""
    mapper: AuditedMapper = app.mapper
    entries: list[AuditEntry] = []
    for originator_id in audit_index(app).aggregates_of(elder_id):
        record_id = None
        for stored in app.recorder.select_events(originator_id):
            entry = mapper.audit_entry(stored, record_id)
            record_id = entry.record_id
            entries.append(entry)
    entries.sort(key=lambda e: (e.time, e.aggregate_id, e.version))
    return entries


COLUMNS = ["service", "time", "actor", "cause", "correlation_id", "aggregate_type",
           "aggregate_id", "record_id", "event_type", "version", "summary"]


def trail_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    return out.getvalue()
