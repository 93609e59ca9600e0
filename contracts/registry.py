"""Which event types exist, where they travel, and how raw messages become events.

`parse_event` is what every consumer calls on a message value. It never lets a raw exception out:
whatever is wrong with the message becomes a `ContractError` whose reason goes to the `.dlq` topic.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from contracts import events
from contracts.envelope import IntegrationEvent

# Every event class at its current schema version, keyed by `type`.
EVENT_TYPES: dict[str, type[IntegrationEvent]] = {
    cls.__name__: cls
    for cls in (getattr(events, name) for name in events.__all__)
    if isinstance(cls, type) and issubclass(cls, IntegrationEvent)
}
# The topic each event type is published on.
TOPIC_OF: dict[str, str] = {name: cls.topic for name, cls in EVENT_TYPES.items()}

# (type, from_version) -> function turning a message dict of that version into the next version.
# A breaking change to an event is a new schema_version plus an upcaster here; none exist yet.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class ContractError(ValueError):
    """A message that does not satisfy the contract. `reason` is meant for people (and the DLQ)."""

    def __init__(
        self, reason: str, *, event_type: str | None = None, event_id: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event_type = event_type
        self.event_id = event_id


def _format_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "(message)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


# A JSON escape of a UTF-16 surrogate: paired ones are fine, a lone one is not text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _decode(raw: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(raw, dict):
        return copy.deepcopy(raw)  # upcasters may edit it; the caller's dict stays as it was
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(f"message is not UTF-8 text: {exc}") from exc
    if not isinstance(raw, str):
        raise ContractError(f"message must be bytes, str or dict, not {type(raw).__name__}")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ContractError(f"message is not JSON: {exc}") from exc
    except RecursionError as exc:
        raise ContractError("message is JSON nested too deeply to read") from exc
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            lone = ord(exc.object[exc.start])
            raise ContractError(f"message has a lone surrogate (\\u{lone:x}), which is not "
                                "text") from exc
    if not isinstance(data, dict):
        raise ContractError(f"message must be a JSON object, not {type(data).__name__}")
    return data


def upcast(data: dict[str, Any], event_type: str, version: int, target: int) -> dict[str, Any]:
    """Apply upcasters one version at a time from `version` to `target`."""
    while version < target:
        upcaster = UPCASTERS.get((event_type, version))
        if upcaster is None:
            raise ContractError(
                f"unsupported schema_version {version} of {event_type}: "
                f"no upcaster from version {version} (this consumer reads version {target})",
                event_type=event_type,
                event_id=str(data.get("event_id")) if data.get("event_id") else None,
            )
        data = upcaster(data)
        version += 1
        data["schema_version"] = version
    return data


def parse_event(raw: bytes | str | dict[str, Any], *, topic: str | None = None) -> IntegrationEvent:
    """Turn a message value into its event, upcast to the version this code reads.

    Raises ContractError when the message is not JSON, names an unknown type, has a
    schema_version this consumer cannot read, or has an invalid field; and, when `topic` (the
    topic the message was read from) is given, when the type does not travel on that topic.
    """
    return parse_event_and_version(raw, topic=topic)[0]


def parse_event_and_version(raw: bytes | str | dict[str, Any], *, topic: str | None = None
                            ) -> tuple[IntegrationEvent, int]:
    """As :func:`parse_event`, with the schema_version the message itself carried (before
    upcasting), which a consumer compares with the message's header."""
    data = _decode(raw)
    event_id = str(data["event_id"]) if data.get("event_id") is not None else None
    event_type = data.get("type")
    if event_type is None:
        raise ContractError("message has no 'type' field", event_id=event_id)
    if not isinstance(event_type, str):
        raise ContractError(f"'type' must be a string, not {event_type!r}", event_id=event_id)
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise ContractError(
            f"unknown event type {event_type!r}", event_type=event_type, event_id=event_id
        )
    if topic is not None and cls.topic != topic:
        raise ContractError(
            f"{event_type} belongs on topic {cls.topic!r}, not {topic!r}",
            event_type=event_type,
            event_id=event_id,
        )
    version = data.get("schema_version")
    if version is None:
        raise ContractError(
            f"{event_type} message has no 'schema_version' field",
            event_type=event_type,
            event_id=event_id,
        )
    if isinstance(version, bool) or not isinstance(version, int):
        raise ContractError(
            f"schema_version must be an integer, not {version!r}",
            event_type=event_type,
            event_id=event_id,
        )
    current = cls.current_version()
    if version > current:
        raise ContractError(
            f"unsupported schema_version {version} of {event_type}: "
            f"this consumer reads up to version {current}",
            event_type=event_type,
            event_id=event_id,
        )
    data = upcast(data, event_type, version, current)
    try:
        return cls.model_validate(data), version
    except ValidationError as exc:
        raise ContractError(
            f"invalid {event_type} v{current}: {_format_validation_error(exc)}",
            event_type=event_type,
            event_id=event_id,
        ) from exc
    except (ValueError, ArithmeticError, TypeError, RecursionError) as exc:
        # What a validator raised that pydantic does not wrap (a date out of range in UTC...).
        raise ContractError(
            f"invalid {event_type} v{current}: {type(exc).__name__}: {exc}",
            event_type=event_type,
            event_id=event_id,
        ) from exc
