"""Validation that protects the ledger: integer minutes, ordered time spans, legs that add up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from contracts.events import CreditsEarned, HoursReserved, OrderPlaced, VisitVerified
from contracts.registry import TOPIC_OF, ContractError, parse_event
from contracts.topics import ALL_TOPICS, DEFAULT_PARTITIONS, dlq

Edit = Callable[[dict[str, Any]], None]


def _set(field: str, value: Any) -> Edit:
    def edit(payload: dict[str, Any]) -> None:
        payload[field] = value

    return edit


def _swap(first: str, second: str) -> Edit:
    def edit(payload: dict[str, Any]) -> None:
        payload[first], payload[second] = payload[second], payload[first]

    return edit


def _leg_minutes(minutes: Any) -> Edit:
    def edit(payload: dict[str, Any]) -> None:
        payload["legs"][0]["minutes"] = minutes

    return edit


REJECTED: list[tuple[str, Edit, str]] = [
    ("OrderPlaced", _swap("window_start", "window_end"), "window_end must be after window_start"),
    ("OrderPlaced", _set("window_end", "2026-03-02T01:30:00Z"), "window_end must be after"),
    ("OrderPlaced", _set("staff_count", 3), "staff_count"),
    ("OrderPlaced", _set("duration_minutes", 0), "duration_minutes"),
    ("OrderPlaced", _set("location", {"lat": 91, "lon": 120}), "location.lat"),
    ("OrderPlaced", _set("location", {"lat": 29, "lon": 181}), "location.lon"),
    ("OrderPlaced", _set("requested_date", "2026-03-02T09:00:00Z"), "requested_date"),
    ("VisitScheduled", _swap("planned_start", "planned_end"), "planned_end must be after"),
    ("VisitRescheduled", _set("planned_end", "2026-03-02T01:30:00Z"), "planned_end must be"),
    ("VisitScheduled", _set("planned_minutes", 0), "planned_minutes"),
    ("VisitScheduled", _set("caregiver_kind", "robot"), "caregiver_kind"),
    ("VisitScheduled", _set("elder_id", ""), "elder_id"),
    ("VisitCheckedIn", _set("at", "2026-03-02T09:30:00"), "payload.at"),
    ("VisitCheckedIn", _set("distance_m", -5), "distance_m"),
    ("VisitCheckedOut", _set("actual_minutes", -1), "actual_minutes"),
    ("VisitVerified", _swap("started_at", "ended_at"), "ended_at must be after started_at"),
    ("VisitVerified", _set("actual_minutes", 61), "actual_minutes 61 exceed the 60 minutes"),
    ("VisitVerified", _set("actual_minutes", 59.5), "actual_minutes"),
    ("VisitVerified", _set("actual_minutes", "60"), "actual_minutes"),
    ("VisitVerified", _set("confirmation", "telepathy"), "confirmation"),
    ("HoursReserved", _leg_minutes(40), "legs add up to 55 minutes, not requested_minutes 60"),
    ("HoursReserved", _set("legs", []), "legs"),
    ("HoursReserved", _leg_minutes(-5), "legs.0.minutes"),
    ("VisitCharged", _set("charged_minutes", 59), "legs add up to 60 minutes"),
    ("VisitCharged", _leg_minutes(True), "legs.0.minutes"),
    ("ReservationReleased", _set("reason", "lost"), "reason"),
    ("EntitlementExhausted", _set("month", "2026-13"), "month"),
    ("EntitlementExhausted", _set("month", "2026-3"), "month"),
    ("CreditsEarned", _set("multiplier_permille", 0), "multiplier_permille"),
    ("CreditsEarned", _set("balance_after_minutes", -1), "balance_after_minutes"),
    ("CreditsReserved", _set("minutes", 0), "minutes"),
    ("CreditsGifted", _set("to_account_id", "tc-vol1"), "must differ"),
    ("CreditsGifted", _set("minutes", 0), "minutes"),
]


@pytest.mark.parametrize(
    ("event_type", "edit", "expected"),
    REJECTED,
    ids=[f"{t}-{e}" for t, _, e in REJECTED],
)
def test_invalid_payload_is_rejected(
    message: Any, event_type: str, edit: Edit, expected: str
) -> None:
    """Each ledger-protecting rule rejects a message that breaks it, and says which rule."""
    raw = message(event_type)
    parse_event(raw)  # the unedited example is valid: the edit alone is what breaks it
    edit(raw["payload"])
    with pytest.raises(ContractError) as caught:
        parse_event(raw)
    assert expected in caught.value.reason


def test_optional_window_and_location_may_be_absent(message: Any) -> None:
    """An order without a time window, location or credits account is fine (dispatcher decides)."""
    raw = message("OrderPlaced")
    for field in ("window_start", "window_end", "location", "time_credit_account_id", "notes"):
        del raw["payload"][field]
    del raw["payload"]["staff_count"]
    event = parse_event(raw)
    assert isinstance(event, OrderPlaced)
    assert event.payload.window_start is None
    assert event.payload.staff_count == 1


def test_visit_verified_allows_rounding_up_to_the_started_minute(message: Any) -> None:
    """actual_minutes may round a partial minute up (61 for 60m30s) but no further."""
    raw = message("VisitVerified")
    raw["payload"]["ended_at"] = "2026-03-02T02:30:30Z"
    raw["payload"]["actual_minutes"] = 61
    event = parse_event(raw)
    assert isinstance(event, VisitVerified)
    raw["payload"]["actual_minutes"] = 62
    with pytest.raises(ContractError, match="exceed the 61 minutes"):
        parse_event(raw)


def test_zero_minute_charge_has_no_legs(message: Any) -> None:
    """A verified visit of 0 minutes charges nothing: no legs is consistent."""
    raw = message("VisitCharged")
    raw["payload"]["charged_minutes"] = 0
    raw["payload"]["legs"] = []
    assert parse_event(raw).payload.legs == []


def test_amounts_and_multiplier_defaults(message: Any) -> None:
    """A leg without money owed has amount 0 fen; credits default to one for one (1000 permille)."""
    raw = message("HoursReserved")
    event = parse_event(raw)
    assert isinstance(event, HoursReserved)
    assert [leg.amount_fen for leg in event.payload.legs] == [0, 750]
    raw = message("CreditsEarned")
    del raw["payload"]["multiplier_permille"]
    earned = parse_event(raw)
    assert isinstance(earned, CreditsEarned)
    assert earned.payload.multiplier_permille == 1000


def test_topics_and_dead_letters() -> None:
    """Three topics, each with a .dlq twin; every topic (and dlq) has a partition count."""
    assert ALL_TOPICS == ("homecare.orders", "homecare.visits", "homecare.funding")
    assert dlq("homecare.visits") == "homecare.visits.dlq"
    for topic in ALL_TOPICS:
        assert DEFAULT_PARTITIONS[topic] >= 1
        assert DEFAULT_PARTITIONS[dlq(topic)] >= 1


def test_each_event_goes_to_its_stream() -> None:
    """Orders go to dispatch, visits come out of it, funding from ledger and time bank."""
    assert set(TOPIC_OF.values()) == set(ALL_TOPICS)
    assert TOPIC_OF["OrderPlaced"] == "homecare.orders"
    assert TOPIC_OF["VisitVerified"] == "homecare.visits"
    assert TOPIC_OF["VisitCharged"] == "homecare.funding"
    assert TOPIC_OF["CreditsEarned"] == "homecare.funding"
