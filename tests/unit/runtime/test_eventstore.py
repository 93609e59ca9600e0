"""The event-store plumbing's pure parts: copies of cached aggregates, stable ids."""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.runtime.eventstore import Processing, copy_aggregate, stable_id


class Colour(Enum):
    RED = "red"


@dataclass(frozen=True)
class Rules:
    grace: tuple[int, ...]


class Sample(Aggregate):
    @event("Made")
    def __init__(self, name: str) -> None:
        self.name = name
        self.at = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
        self.on = date(2026, 1, 2)
        self.colour = Colour.RED
        self.keys: dict[str, list[datetime]] = {"a": [self.at]}
        self.tags = {"x"}
        self.pairs = (("a", 1),)
        self.rules = Rules((5, 15))
        self.notes: list[dict[str, str]] = [{"text": "n"}]
        self.same_notes = self.notes

    @event("Noted")
    def note(self, text: str) -> None:
        self.notes.append({"text": text})


def test_a_copy_shares_nothing_a_command_could_change():
    """Changing the copy (its lists, dicts, sets, nested ones too) leaves the original as it
    was, as copy.deepcopy would."""
    original = Sample(name="a")
    original.collect_events()  # saved
    copy = copy_aggregate(original)
    copy.note(text="later")
    copy.keys["a"].append(datetime(2027, 1, 1, tzinfo=UTC))
    copy.keys["b"] = []
    copy.tags.add("y")
    copy.notes[0]["text"] = "changed"
    assert original.notes == [{"text": "n"}] and original.version == 1
    assert original.keys == {"a": [original.at]} and original.tags == {"x"}
    assert copy.version == 2 and len(copy.collect_events()) == 1
    assert original.collect_events() == []


def test_a_copy_shares_immutable_values_and_keeps_aliases():
    """Datetimes, dates, enums, UUIDs and tuples of them are shared (never changed in place);
    one list referenced by two attributes stays one list in the copy."""
    original = Sample(name="a")
    copy = copy_aggregate(original)
    assert copy.at is original.at and copy.on is original.on and copy.colour is original.colour
    assert copy.id == original.id and isinstance(copy.id, UUID)
    assert copy.same_notes is copy.notes and copy.notes is not original.notes
    assert copy.rules == original.rules and copy.pairs == original.pairs
    assert vars(copy).keys() == vars(original).keys()


def test_stable_ids_are_the_same_for_the_same_parts():
    """The same parts always give the same id (cached or not), different parts another."""
    assert stable_id("visit", "V-1") == stable_id("visit", "V-1")
    assert stable_id("visit", "V-1") != stable_id("visit", "V-2")
    assert stable_id("visit", "V-1") == stable_id("visit/V-1")  # parts joined by "/"


def test_processing_collects_aggregates_and_events_by_class():
    """An aggregate's pending events and a bare event are both collected, in order; None is
    skipped."""
    one, two = Sample(name="1"), Sample(name="2")
    loose = Sample(name="3").collect_events()[0]
    processing = Processing()
    processing.collect_events(one, None, loose, two)
    assert [e.originator_id for e in processing.events] == [one.id, loose.originator_id, two.id]
    assert set(processing.aggregates) == {one.id, two.id}
