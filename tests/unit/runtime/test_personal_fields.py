"""Per-person data keys and the mapper that seals personal fields with them (in memory)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import Environment

from services.runtime.cipher import RotatingAESCipher, new_key
from services.runtime.eventstore import ServiceApplication
from services.runtime.keystore import MemorySubjectKeys, SubjectErased
from services.runtime.personal import ERASED, MARK, PersonalFields


class Person(Aggregate):
    @event("Registered")
    def __init__(self, person_id: str, name: str, born: date, phone: str | None = None,
                 area: str = "A1") -> None:
        self.person_id, self.name, self.born, self.phone, self.area = (
            person_id, name, born, phone, area)

    @event("Moved")
    def move(self, area: str) -> None:
        self.area = area


class People(ServiceApplication):
    personal_data = {Person.Registered: PersonalFields(  # type: ignore[attr-defined]
        "person_id", ("name", "born", "phone"), kind="person")}


def stored_state(app: People, person: Person) -> dict[str, Any]:
    (stored,) = app.recorder.select_events(person.id, lte=1)
    return json.loads(stored.state)


def test_subject_keys_are_made_once_wrapped_at_rest_and_gone_after_delete():
    """key_or_create is stable per subject; the stored form is wrapped by the store cipher; after
    delete the subject has no key, and never gets one again."""
    wrap = RotatingAESCipher(Environment(env={"CIPHER_KEY": new_key()}))
    keys = MemorySubjectKeys(wrap)
    first = keys.key_or_create("elder:E-1")
    assert keys.key_or_create("elder:E-1") == first and len(first) == 32
    assert keys.key("elder:E-2") is None
    assert keys._rows["elder:E-1"] != first and wrap.decrypt(keys._rows["elder:E-1"]) == first
    assert keys.delete("elder:E-1") is True
    assert keys.key("elder:E-1") is None and keys.delete("elder:E-1") is False
    # The erasure is remembered: no new key is ever made for that subject.
    with pytest.raises(SubjectErased, match="register the person under a new id"):
        keys.key_or_create("elder:E-1")
    assert keys.subjects() == [] and keys.is_erased("elder:E-1")


def test_an_event_about_an_erased_person_keeps_nothing_personal():
    """After erasure, a new event naming the person (an alert, a re-registration) stores the
    erased value instead of the data, and the person's earlier events still read as erased
    (a fresh key would have made them fail to open)."""
    app = People()
    first = Person(person_id="P-1", name="王秀英", born=date(1940, 1, 1))
    app.save(first)
    app.erase_subject("person:P-1")
    again = Person(person_id="P-1", name="王秀英", born=date(1940, 1, 1), phone="138")
    app.save(again)
    assert "王秀英" not in json.dumps(stored_state(app, again), ensure_ascii=False)
    assert app.repository.get(again.id).name == ERASED
    assert app.repository.get(first.id).name == ERASED


def test_named_fields_are_sealed_in_the_stored_event_and_open_when_read():
    """The stored Registered event holds sealed name, birth date and phone (no plain text), the
    rest as is; the application reads the person back whole, and the event it saved is not
    changed by storing."""
    app = People()
    person = Person(person_id="P-1", name="王秀英", born=date(1940, 1, 1), phone="13800001111")
    app.save(person)
    state = stored_state(app, person)
    assert set(state["name"]) == {MARK} and set(state["born"]) == {MARK}
    assert state["person_id"] == "P-1" and state["area"] == "A1"
    assert "王秀英" not in json.dumps(state, ensure_ascii=False)
    assert person.name == "王秀英"
    again = app.repository.get(person.id)
    assert (again.name, again.born, again.phone) == ("王秀英", date(1940, 1, 1), "13800001111")
    assert app.subject_keys.subjects() == ["person:P-1"]


def test_after_erasure_the_fields_read_as_erased_and_everything_else_still_works():
    """Deleting the person's key leaves their events readable with personal fields "[erased]";
    other people and non-personal events (Moved) are untouched; None stays None."""
    app = People()
    erased = Person(person_id="P-1", name="王秀英", born=date(1940, 1, 1))
    kept = Person(person_id="P-2", name="李建国", born=date(1938, 3, 3), phone="139")
    erased.move(area="A2")
    app.save(erased, kept)
    assert app.erase_subject("person:P-1") is True
    gone = app.repository.get(erased.id)
    assert (gone.name, gone.born, gone.phone, gone.area) == (ERASED, ERASED, None, "A2")
    assert app.repository.get(kept.id).name == "李建国"


def test_a_sealed_value_cannot_be_moved_to_another_person_or_field():
    """A sealed value is bound to its subject and attribute: copied into another person's event
    (or another field) it does not open, even while both keys exist."""
    app = People()
    mapper = app.mapper
    sealed = mapper.seal_value("person:P-1", "name", "王秀英")
    mapper.keys.key_or_create("person:P-2")
    assert mapper.open_value("person:P-1", "name", sealed) == "王秀英"
    # It reads as erased (and is logged), never as the other person's data nor as a failure.
    assert mapper.open_value("person:P-2", "name", sealed) == ERASED
    assert mapper.open_value("person:P-1", "phone", sealed) == ERASED


class Flagged(ServiceApplication):
    personal_data = {Person.Registered: PersonalFields(  # type: ignore[attr-defined]
        "person_id", ("name", "born", "phone"), kind="person",
        erased_as=(("born", None), ("phone", "")))}


def test_erased_as_gives_a_field_its_own_erased_value():
    """A field named in erased_as reads as that value after erasure (a date as None, not the
    text "[erased]"); the other personal fields still read "[erased]"."""
    app = Flagged()
    person = Person(person_id="P-1", name="王秀英", born=date(1940, 1, 1), phone="139")
    app.save(person)
    app.erase_subject("person:P-1")
    gone = app.repository.get(person.id)
    assert (gone.name, gone.born, gone.phone) == (ERASED, None, "")
