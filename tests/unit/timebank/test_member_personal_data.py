"""A time-bank member's birth date, hardship and display name sealed with the person's own key
(elders join with their name; volunteers are persons too), and what an erasure leaves."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from contracts.events.visits import ElderErased
from services.runtime.personal import ERASED, MARK
from services.timebank.application import TimebankApplication
from services.timebank.domain.credits import Member
from services.timebank.domain.rules import RuleError
from tests.unit.timebank.conftest import START, Events

AT = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)


def stored_states(app: TimebankApplication, person_id: str) -> list[dict]:
    return [json.loads(e.state) for e in app.recorder.select_events(Member.create_id(person_id))]


def test_member_details_are_sealed_per_person_in_the_stored_events(app):
    """Joined and DetailsChanged hold birth date, hardship and display name sealed (no name, no
    birth year in the stored state; DetailsChanged names the person); the member reads back
    whole; an elder and a volunteer each get a key of their own."""
    app.join("E-1", "A", birth_date=date(1940, 2, 3), display_name="王秀英")
    app.join("E-1", "A", birth_date=date(1940, 2, 3), hardship=True, display_name="王秀英")
    app.join("vol-1", "A", birth_date=date(1990, 5, 6), display_name="李志愿")
    states = stored_states(app, "E-1")
    assert [s["person_id"] for s in states] == ["E-1", "E-1"]
    assert all(set(s[f]) == {MARK} for s in states
               for f in ("birth_date", "hardship", "display_name"))
    text = json.dumps(states + stored_states(app, "vol-1"), ensure_ascii=False)
    assert "王秀英" not in text and "李志愿" not in text and "1940" not in text
    member = app.member("E-1")
    assert (member.display_name, member.birth_date, member.hardship) == (
        "王秀英", date(1940, 2, 3), True)
    assert {"person:E-1", "person:vol-1"} <= set(app.subject_keys.subjects())


def test_erasure_keeps_the_account_and_makes_the_details_unreadable(app):
    """erase_member: the name reads "[erased]", the birth date as unknown and hardship as not
    claimed (never the truthy text), after re-reading the stored events too; the balance is
    kept; redeeming for the erased person is refused by the age rule (birth date unknown);
    joining again with details is refused; another member is intact."""
    events = Events(app)
    app.join("E-1", "A", birth_date=date(1940, 2, 3), hardship=True, display_name="王秀英")
    app.join("vol-1", "A", birth_date=date(1990, 5, 6), display_name="李志愿")
    events.feed(Events.verified("V1", "E-1", 30))
    balance = app.account_by_code(app.member("E-1").account_code).balance
    member = app.erase_member("E-1", by="admin:zhang", at=AT)
    assert member is not None and member.erased
    assert app.erase_member("E-1", by="admin:zhang", at=AT) is not None  # again: harmless
    assert "person:E-1" not in app.subject_keys.subjects()
    again = app.member("E-1")
    assert (again.display_name, again.birth_date, again.hardship) == (ERASED, None, False)
    joined = next(e for e in app.events.get(again.id) if type(e).__qualname__ == "Member.Joined")
    assert (joined.display_name, joined.birth_date, joined.hardship) == (ERASED, None, False)
    assert app.account_by_code(again.account_code).balance == balance != 0
    with pytest.raises(RuleError, match="birth date unknown"):
        app.redeem("E-1", "E-1", "welfare_check", 10, START.date(), "a1")
    with pytest.raises(RuleError, match="erased"):
        app.join("E-1", "A", birth_date=date(1940, 2, 3), display_name="王秀英")
    assert app.member("vol-1").display_name == "李志愿"


def test_elder_erased_on_the_topic_erases_the_member_once(app):
    """ElderErased fed as the consumer does records Member.Erased (who, when) and shreds the
    person's key; the same event again changes nothing; an elder who never joined is no error."""
    events = Events(app)
    app.join("E-1", "A", birth_date=date(1940, 2, 3), display_name="王秀英")
    message = ElderErased(service_area_id="a1", payload={
        "elder_id": "E-1", "erased_by": "admin:zhang", "erased_at": AT})
    assert events.feed(message) == []  # nothing to publish
    member = app.member("E-1")
    assert (member.erased_by, member.erased_at, member.display_name) == (
        "admin:zhang", AT, ERASED)
    version = member.version
    events.feed(message)
    assert app.member("E-1").version == version
    events.feed(ElderErased(service_area_id="a1", payload={
        "elder_id": "E-404", "erased_by": "admin:zhang", "erased_at": AT}))
    assert "person:E-404" not in app.subject_keys.subjects()
