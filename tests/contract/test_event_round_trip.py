"""Every event survives the wire: model -> bytes -> parse_event -> the same model."""

from __future__ import annotations

import json

from contracts.envelope import IntegrationEvent
from contracts.registry import EVENT_TYPES, parse_event


def test_every_event_type_has_an_example(sampled_types: set[str]) -> None:
    """A new event type cannot dodge the round-trip tests: each needs an example in conftest."""
    assert sampled_types == set(EVENT_TYPES)


def test_round_trip_through_bytes(any_event: IntegrationEvent) -> None:
    """parse_event(to_bytes()) gives back an equal event of the same class."""
    parsed = parse_event(any_event.to_bytes())
    assert type(parsed) is type(any_event)
    assert parsed == any_event
    assert parsed.to_bytes() == any_event.to_bytes()


def test_parse_accepts_str_and_dict(any_event: IntegrationEvent) -> None:
    """Consumers may hand over the value as text or as an already decoded dict."""
    text = any_event.to_bytes().decode()
    assert parse_event(text) == any_event
    assert parse_event(json.loads(text)) == any_event


def test_wire_format_is_utc_json_with_envelope(any_event: IntegrationEvent) -> None:
    """The value is a JSON object carrying the envelope fields and UTC ('Z') instants."""
    data = json.loads(any_event.to_bytes())
    assert {
        "event_id",
        "type",
        "schema_version",
        "occurred_at",
        "correlation_id",
        "causation_id",
        "service_area_id",
        "payload",
    } <= set(data)
    assert data["type"] == type(any_event).__name__
    assert data["schema_version"] == 1
    assert data["occurred_at"].endswith("Z")
