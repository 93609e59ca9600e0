"""The audit stamp: who caused each stored event, written with it and invisible to the domain."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Any

from eventsourcing.domain import Aggregate, event

from services.runtime.audit import (
    AUDIT_KEY,
    PERSONAL,
    UNRECORDED,
    acting_as,
    elder_trail,
    elders_named,
    record_id_of,
    summarise,
)
from services.runtime.auth import current_principal
from services.runtime.eventstore import ServiceApplication
from services.runtime.host import Host
from services.runtime.observability import correlation_id_var
from services.runtime.personal import PersonalFields
from services.runtime.settings import SharedSettings
from tests.support.auth import principal


class Elder(Aggregate):
    @event("Registered")
    def __init__(self, elder_id: str, name: str, born: date, service_area_id: str) -> None:
        self.elder_id, self.name, self.born, self.service_area_id = (
            elder_id, name, born, service_area_id)

    @event("Moved")
    def move(self, service_area_id: str) -> None:
        self.service_area_id = service_area_id


class HomeVisit(Aggregate):
    @event("Booked")
    def __init__(self, home_visit_id: str, elder_id: str) -> None:
        self.home_visit_id, self.elder_id = home_visit_id, elder_id

    @event("Done")
    def done(self, minutes: int) -> None:
        self.minutes = minutes


class Care(ServiceApplication):
    name = "Care"
    personal_data = {Elder.Registered: PersonalFields(  # type: ignore[attr-defined]
        "elder_id", ("name", "born"), kind="elder")}


def popo() -> Care:
    return Care({"PERSISTENCE_MODULE": "eventsourcing.popo"})


def stored_states(app: Care, aggregate: Aggregate) -> list[dict[str, Any]]:
    return [json.loads(s.state) for s in app.recorder.select_events(aggregate.id)]


def test_stamp_is_stored_with_the_event_and_the_domain_event_reads_back_unchanged():
    """The HTTP caller (current_principal) and the request's correlation id are written into the
    stored state under _audit; the event the application holds gains nothing, and the event
    read back from the store equals it field for field (no _audit): the domain never sees it."""
    app = popo()
    elder = Elder("E-1", "王秀英", date(1941, 3, 2), "A1")
    pending = elder.collect_events()
    before = dict(vars(pending[0]))
    p_token = current_principal.set(principal("dispatcher", "wang"))
    c_token = correlation_id_var.set("req-42")
    try:
        app.save(*pending)
    finally:
        current_principal.reset(p_token)
        correlation_id_var.reset(c_token)
    assert vars(pending[0]) == before  # the application's copy is untouched
    (state,) = stored_states(app, elder)
    assert state[AUDIT_KEY] == {"actor": "dispatcher:wang", "correlation_id": "req-42"}
    (stored,) = app.recorder.select_events(elder.id)
    read = app.mapper.to_domain_event(stored)
    assert vars(read) == before
    assert app.repository.get(elder.id).name == "王秀英"


def test_acting_as_wins_over_the_caller_and_the_service_names_itself_otherwise():
    """Inside acting_as the stamp names that actor and cause (a consumer's, a task's), even in a
    request; outside any request or block the service itself is named (system:<service>)."""
    app = popo()
    elder = Elder("E-1", "x", date(1950, 1, 1), "A1")
    app.save(elder)
    token = current_principal.set(principal("caregiver", "li"))
    try:
        elder.move("A2")
        with acting_as("system:care-consumer", "VisitVerified:123"):
            app.save(elder)
    finally:
        current_principal.reset(token)
    first, second = stored_states(app, elder)
    assert first[AUDIT_KEY] == {"actor": "system:care"}
    assert second[AUDIT_KEY] == {"actor": "system:care-consumer", "cause": "VisitVerified:123"}


def test_trail_of_an_elder_names_personal_fields_without_opening_them_even_after_erasure(
        tmp_path: Path):
    """The trail lists every event of every aggregate naming the elder, oldest first, with
    actor, record id and a summary where personal fields read '(personal)'; the same after the
    elder's key is deleted; other elders' records are not in it."""
    from services.runtime.cipher import cipher_env

    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
           "SQLITE_DBNAME": str(tmp_path / "care.sqlite"),
           **cipher_env(SharedSettings(data_dir=tmp_path))}
    app = Care(env)
    elder, other = Elder("E-1", "王秀英", date(1941, 3, 2), "A1"), Elder("E-2", "y",
                                                                       date(1950, 1, 1), "A1")
    with acting_as("dispatcher:wang"):
        app.save(elder, other)
        visit = HomeVisit("HV-1", "E-1")
        app.save(visit)
    visit.done(45)
    with acting_as("caregiver:li"):
        app.save(visit)

    def check(trail: list[Any]) -> None:
        assert [(e.aggregate_type, e.event_type, e.actor, e.record_id) for e in trail] == [
            ("Elder", "Registered", "dispatcher:wang", "E-1"),
            ("HomeVisit", "Booked", "dispatcher:wang", "HV-1"),
            ("HomeVisit", "Done", "caregiver:li", "HV-1")]
        assert f"name={PERSONAL}" in trail[0].summary and f"born={PERSONAL}" in trail[0].summary
        assert "王秀英" not in repr(trail) and "1941" not in repr(trail)
        assert "service_area_id=A1" in trail[0].summary and "minutes=45" in trail[2].summary

    check(elder_trail(app, "E-1"))
    assert app.erase_subject("elder:E-1")
    check(elder_trail(app, "E-1"))
    assert elder_trail(app, "E-9") == []
    app.close()


def test_events_written_before_the_trail_existed_read_as_unrecorded():
    """A stored event without a stamp (older data) is still in the trail, its actor
    'unrecorded', and still reads back as a domain event."""
    app = popo()
    elder = Elder("E-1", "x", date(1950, 1, 1), "A1")
    app.save(elder)
    (stored,) = app.recorder.select_events(elder.id)
    state = json.loads(stored.state)
    del state[AUDIT_KEY]
    old = type(stored)(stored.originator_id, stored.originator_version, stored.topic,
                       json.dumps(state).encode())
    assert app.mapper.audit_entry(old).actor == UNRECORDED
    assert app.mapper.to_domain_event(old).elder_id == "E-1"


def test_elders_named_and_record_ids():
    """An event names an elder by elder_id or by an elder account code on either side
    (elder:<id>:...); a record id is the aggregate's own *_id, an account's code or a transfer's
    key."""
    assert elders_named({"elder_id": "E-1", "x": "elder:E-2:entitlement:2026-05",
                         "credit_account_id": "provider:P-1:payable"}) == {"E-1", "E-2"}
    assert elders_named({"provider_id": "P-1"}) == set()
    assert record_id_of("ServiceOrder", {"elder_id": "E-1", "order_id": "O-1"}) == "O-1"
    assert record_id_of("CarePlan", {"care_plan_id": "CP-1", "elder_id": "E-1"}) == "CP-1"
    assert record_id_of("Account", {"code": "elder:E-1:cash_paid"}) == "elder:E-1:cash_paid"
    assert record_id_of("Reservation", {"visit_id": "V-1", "elder_id": "E-1"}) == "V-1"
    summary = summarise({"timestamp": 1, "notes": None, "items": [1, 2, 3, 4],
                         "reason": "r" * 100}, ())
    assert summary.startswith("items=[4 items], reason=rrr") and "timestamp" not in summary


def test_periodic_task_changes_are_stamped_with_the_task(tmp_path: Path):
    """What the host's periodic task writes names system:<service>.<task> (the host's own
    loop, run once)."""
    app = popo()
    host = Host([], SharedSettings(data_dir=tmp_path))
    elder = Elder("E-1", "x", date(1950, 1, 1), "A1")

    def sweep() -> None:
        app.save(elder)
        host._stopping.set()

    asyncio.run(host._every(0.01, sweep, "system:care.sweep"))
    (state,) = stored_states(app, elder)
    assert state[AUDIT_KEY] == {"actor": "system:care.sweep"}
