"""parse_event turns every kind of bad message into a ContractError with a reason people can act
on (it ends up next to the message in the .dlq topic)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.registry import ContractError, parse_event


def _reason(raw: Any) -> ContractError:
    with pytest.raises(ContractError) as caught:
        parse_event(raw)
    return caught.value


def test_contract_error_is_a_value_error() -> None:
    """Callers that catch ValueError (e.g. generic decoding code) also catch contract errors."""
    assert issubclass(ContractError, ValueError)


def test_not_json() -> None:
    """Garbage bytes are reported as not JSON, with the decoder's position."""
    error = _reason(b"{not json")
    assert "not JSON" in error.reason
    assert error.event_type is None


def test_not_utf8() -> None:
    """Bytes that are not UTF-8 are reported as such, not as a JSON error."""
    assert "not UTF-8" in _reason(b"\xff\xfe\x00garbage").reason


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"OrderPlaced"', b"42", b"null"])
def test_not_an_object(raw: bytes) -> None:
    """A JSON value that is not an object cannot be an event."""
    assert "must be a JSON object" in _reason(raw).reason


def test_missing_type(message: Any) -> None:
    """Without `type` nobody knows which contract applies."""
    raw = message("VisitVerified")
    del raw["type"]
    error = _reason(raw)
    assert "no 'type'" in error.reason
    assert error.event_id == raw["event_id"]


def test_unknown_type(message: Any) -> None:
    """A type this consumer never heard of is named in the reason."""
    raw = message("VisitVerified")
    raw["type"] = "VisitTeleported"
    error = _reason(json.dumps(raw))
    assert "unknown event type 'VisitTeleported'" in error.reason
    assert error.event_type == "VisitTeleported"


def test_missing_schema_version(message: Any) -> None:
    """schema_version is mandatory: guessing it could misread a message."""
    raw = message("VisitVerified")
    del raw["schema_version"]
    assert "no 'schema_version'" in _reason(raw).reason


@pytest.mark.parametrize("version", ["1", 1.0, True, None])
def test_schema_version_not_an_integer(message: Any, version: Any) -> None:
    """A schema_version that is not a JSON integer is refused (None counts as missing)."""
    reason = _reason(message("VisitVerified", schema_version=version)).reason
    assert "schema_version" in reason


def test_newer_schema_version(message: Any) -> None:
    """A message from the future names both versions so the fix (upgrade the consumer) is clear."""
    reason = _reason(message("VisitVerified", schema_version=7)).reason
    assert "unsupported schema_version 7 of VisitVerified" in reason
    assert "reads up to version 1" in reason


def test_older_schema_version_without_upcaster(message: Any) -> None:
    """An old version no upcaster can lift is unsupported; the reason names the missing one."""
    reason = _reason(message("VisitVerified", schema_version=0)).reason
    assert "unsupported schema_version 0 of VisitVerified" in reason
    assert "no upcaster from version 0" in reason


def test_missing_field_names_the_path(message: Any) -> None:
    """A missing payload field is named by its dotted path."""
    raw = message("VisitVerified")
    del raw["payload"]["actual_minutes"]
    error = _reason(raw)
    assert error.reason.startswith("invalid VisitVerified v1:")
    assert "payload.actual_minutes: Field required" in error.reason
    assert error.event_type == "VisitVerified"
    assert error.event_id == raw["event_id"]


def test_wrong_field_type_names_the_path(message: Any) -> None:
    """A field of the wrong kind (minutes as a float) is named with pydantic's explanation."""
    raw = message("VisitCharged")
    raw["payload"]["legs"][1]["minutes"] = 15.5
    reason = _reason(raw).reason
    assert "payload.legs.1.minutes" in reason


def test_broken_business_rule_is_explained(message: Any) -> None:
    """A rule that protects the ledger (legs add up to the charge) shows its own message."""
    raw = message("VisitCharged")
    raw["payload"]["charged_minutes"] = 90
    reason = _reason(raw).reason
    assert "legs add up to 60 minutes, not charged_minutes 90" in reason


def test_several_problems_are_all_listed(message: Any) -> None:
    """All invalid fields are reported at once, not one per redelivery."""
    raw = message("OrderPlaced")
    raw["payload"]["service_type"] = "teleportation"
    raw["payload"]["staff_count"] = 3
    reason = _reason(raw).reason
    assert "payload.service_type" in reason
    assert "payload.staff_count" in reason


def test_event_on_the_wrong_topic(message: Any) -> None:
    """Given the topic a message came from, an event that belongs elsewhere is refused."""
    raw = message("VisitCharged")
    assert parse_event(raw, topic="homecare.funding").type == "VisitCharged"
    reason = _reason_on(raw, "homecare.visits")
    assert "VisitCharged belongs on topic 'homecare.funding', not 'homecare.visits'" in reason


def _reason_on(raw: Any, topic: str) -> str:
    with pytest.raises(ContractError) as caught:
        parse_event(raw, topic=topic)
    return caught.value.reason


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000])
def test_json_nested_too_deeply(raw: bytes) -> None:
    """JSON nested deeper than the decoder can go is a contract error, not a RecursionError
    escaping to the consumer (which would redeliver it forever)."""
    assert "nested too deeply" in _reason(raw).reason


def test_lone_surrogate_is_not_text(message: Any) -> None:
    """A lone UTF-16 surrogate escape is valid JSON but not text (no store can keep it): it is
    refused; a surrogate pair (an emoji) is fine."""
    raw = message("VisitCancelled")
    raw["payload"]["reason"] = "\ud800"
    assert "lone surrogate" in _reason(json.dumps(raw)).reason
    raw["payload"]["reason"] = "\U0001f600"
    assert parse_event(json.dumps(raw)).payload.reason == "\U0001f600"


def test_instant_out_of_range_in_utc_names_the_field(message: Any) -> None:
    """An instant that exists in its own offset but not in UTC (year 1 at +14:00) is refused
    with the field's name, not an OverflowError."""
    raw = message("VisitCancelled", occurred_at="0001-01-01T00:00:00+14:00")
    reason = _reason(json.dumps(raw)).reason
    assert "occurred_at" in reason and "out of range in UTC" in reason
