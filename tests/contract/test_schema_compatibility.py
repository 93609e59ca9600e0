"""compare() finds each kind of backward-incompatible change and lets compatible ones through;
write_schemas() refuses to overwrite the committed contract with a breaking one."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, Field

from contracts.envelope import EventPayload, IntegrationEvent
from contracts.export import (
    INDEX_FILE,
    IncompatibleSchemaError,
    compare,
    render,
    schema_documents,
    write_schemas,
)
from contracts.registry import EVENT_TYPES, UPCASTERS
from contracts.topics import ORDERS


class Kind(StrEnum):
    A = "a"
    B = "b"
    C = "c"


class Point(BaseModel):
    lat: float
    lon: float


class Record(BaseModel):
    """The 'old' side of the synthetic pairs: a bit of everything the contracts use."""

    id: str = Field(min_length=1)
    minutes: int = Field(ge=0)
    note: str | None = None
    kind: Kind
    where: Point
    stops: list[Point] = []
    tags: list[str] = []
    at: datetime
    version: Literal[1] = 1


OLD = Record.model_json_schema()

Mutation = Callable[[dict[str, Any]], None]


def _props(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["properties"]


def _point(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["$defs"]["Point"]


BREAKING: list[tuple[str, Mutation, str]] = [
    ("removed field", lambda d: _props(d).pop("note"), "removed field note"),
    (
        "new required field",
        lambda d: (_props(d).update(x={"type": "string"}), d["required"].append("x")),
        "new required field x",
    ),
    ("optional became required", lambda d: d["required"].append("note"), "field became required"),
    (
        "required became optional",
        lambda d: d["required"].remove("kind"),
        "no longer required: kind",
    ),
    (
        "int to string",
        lambda d: _props(d)["minutes"].update(type="string"),
        "changed type of minutes",
    ),
    ("int to number is a change", lambda d: _props(d)["minutes"].update(type="number"), "minutes"),
    (
        "nullable made non-null",
        lambda d: _props(d).update(note={"type": "string"}),
        "changed type of note: no longer accepts null",
    ),
    (
        "non-null made nullable",
        lambda d: _props(d).update(
            minutes={"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}
        ),
        "changed type of minutes: now also accepts null",
    ),
    ("format changed", lambda d: _props(d)["at"].update(format="date"), "changed type of at"),
    (
        "nested model field type ($defs)",
        lambda d: _point(d)["properties"]["lat"].update(type="string"),
        "changed type of where.lat",
    ),
    (
        "nested model lost a field",
        lambda d: _point(d)["properties"].pop("lon"),
        "removed field where.lon",
    ),
    (
        "nested model inside a list",
        lambda d: _point(d)["required"].append("alt") or _point(d)["properties"].update(alt={}),
        "new required field stops[].alt",
    ),
    ("list item type", lambda d: _props(d)["tags"]["items"].update(type="integer"), "tags[]"),
    (
        "enum lost a value",
        lambda d: d["$defs"]["Kind"]["enum"].remove("c"),
        "enum kind lost values ['c']",
    ),
    ("const changed", lambda d: _props(d)["version"].update(const=2), "changed type of version"),
    ("minimum raised", lambda d: _props(d)["minutes"].update(minimum=1), "constraint minimum"),
    ("min length raised", lambda d: _props(d)["id"].update(minLength=3), "constraint minLength"),
    ("object became string", lambda d: _props(d).update(where={"type": "string"}), "where"),
]


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [(m, e) for _, m, e in BREAKING],
    ids=[name for name, _, _ in BREAKING],
)
def test_compare_detects_each_kind_of_break(mutation: Mutation, expected: str) -> None:
    """Each synthetic breaking change is reported, naming the field by its path."""
    new = copy.deepcopy(OLD)
    mutation(new)
    problems = compare(OLD, new)
    assert any(expected in problem for problem in problems), problems


COMPATIBLE: list[tuple[str, Mutation]] = [
    ("new optional field", lambda d: _props(d).update(extra={"type": "string", "default": ""})),
    ("new optional nested field", lambda d: _point(d)["properties"].update(alt={"type": "number"})),
    ("enum gained a value", lambda d: d["$defs"]["Kind"]["enum"].append("d")),
    ("title and description", lambda d: d.update(title="Other", description="new words")),
    ("default changed", lambda d: _props(d)["note"].update(default="-")),
]


@pytest.mark.parametrize("mutation", [m for _, m in COMPATIBLE], ids=[n for n, _ in COMPATIBLE])
def test_compare_accepts_compatible_changes(mutation: Mutation) -> None:
    """New optional fields, new enum values and documentation changes are not breaks."""
    new = copy.deepcopy(OLD)
    mutation(new)
    assert compare(OLD, new) == []


def test_compare_identical_is_empty() -> None:
    """A schema is compatible with itself, for every real event too."""
    assert compare(OLD, copy.deepcopy(OLD)) == []
    for doc in schema_documents().values():
        assert compare(doc, copy.deepcopy(doc)) == []


def test_compare_on_pydantic_model_versions() -> None:
    """The pairs pydantic itself generates: an added optional field passes, a retyped one fails."""

    class WithOptional(Record):
        accuracy_m: int | None = None

    class Retyped(Record):
        minutes: str  # type: ignore[assignment]

    assert compare(OLD, WithOptional.model_json_schema()) == []
    assert any("changed type of minutes" in p for p in compare(OLD, Retyped.model_json_schema()))


def test_compare_follows_refs_into_a_real_event() -> None:
    """Removing a payload field of a real event is found through the payload's $ref."""
    old = schema_documents()["VisitVerified.v1.json"]
    new = copy.deepcopy(old)
    del new["$defs"]["VisitVerifiedPayload"]["properties"]["location_verified"]
    new["$defs"]["VisitVerifiedPayload"]["required"].remove("location_verified")
    new["$defs"]["ServiceType"]["enum"].remove("bathing")
    problems = compare(old, new)
    assert "removed field payload.location_verified" in problems
    assert "enum payload.service_type lost values ['bathing']" in problems


# --- write_schemas against a scratch copy of the committed directory -----------------------------


def _snapshot(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.iterdir())}


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(render(doc), encoding="utf-8")


def test_write_schemas_writes_everything_then_nothing(tmp_path: Path) -> None:
    """A fresh directory gets every schema and the index; a second run changes nothing."""
    written = write_schemas(tmp_path)
    assert set(written) == set(schema_documents()) | {INDEX_FILE}
    assert write_schemas(tmp_path) == []


def test_write_schemas_refuses_a_breaking_change(tmp_path: Path) -> None:
    """If the committed schema has a field the model lost, nothing is written and the error lists
    the break."""
    write_schemas(tmp_path)
    _edit(
        tmp_path / "OrderCancelled.v1.json",
        lambda d: d["$defs"]["OrderCancelledPayload"]["properties"].update(
            refund_fen={"type": "integer"}
        ),
    )
    (tmp_path / INDEX_FILE).unlink()
    before = _snapshot(tmp_path)
    with pytest.raises(IncompatibleSchemaError) as caught:
        write_schemas(tmp_path)
    assert caught.value.problems == ["OrderCancelled.v1.json: removed field payload.refund_fen"]
    assert "new schema_version and an upcaster" in str(caught.value)
    assert _snapshot(tmp_path) == before


def test_write_schemas_overwrites_with_a_compatible_change(tmp_path: Path) -> None:
    """A model that gained an optional field (committed file lacks it) is simply re-exported."""
    write_schemas(tmp_path)
    _edit(
        tmp_path / "OrderCancelled.v1.json",
        lambda d: d["$defs"]["OrderCancelledPayload"]["properties"].pop("cancelled_by"),
    )
    assert write_schemas(tmp_path) == ["OrderCancelled.v1.json"]
    assert _snapshot(tmp_path)["OrderCancelled.v1.json"] == render(
        schema_documents()["OrderCancelled.v1.json"]
    )


def test_write_schemas_refuses_a_removed_event_type(tmp_path: Path) -> None:
    """A committed event type that no model produces any more is a break."""
    write_schemas(tmp_path)
    (tmp_path / "VisitTeleported.v1.json").write_text("{}\n", encoding="utf-8")
    with pytest.raises(IncompatibleSchemaError, match="VisitTeleported: event type removed"):
        write_schemas(tmp_path)


def test_write_schemas_refuses_a_version_regression(tmp_path: Path) -> None:
    """Models at v1 while v2 is committed means a version was rolled back."""
    write_schemas(tmp_path)
    (tmp_path / "OrderCancelled.v2.json").write_text("{}\n", encoding="utf-8")
    with pytest.raises(IncompatibleSchemaError, match="models are at v1 but v2 is committed"):
        write_schemas(tmp_path)


def _order_cancelled_v2() -> type[IntegrationEvent]:
    class OrderCancelledPayloadV2(EventPayload):
        order_id: str
        elder_id: str
        reason_code: str

    class OrderCancelled(IntegrationEvent):
        topic: ClassVar[str] = ORDERS
        type: Literal["OrderCancelled"] = "OrderCancelled"
        schema_version: Literal[2] = 2
        payload: OrderCancelledPayloadV2

    return OrderCancelled


def test_new_version_needs_an_upcaster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A breaking change as a new version is refused until the upcaster from v1 exists; then the
    v2 file is added and the v1 file kept as history."""
    write_schemas(tmp_path)
    monkeypatch.setitem(EVENT_TYPES, "OrderCancelled", _order_cancelled_v2())
    with pytest.raises(IncompatibleSchemaError, match="no upcaster from OrderCancelled v1"):
        write_schemas(tmp_path)
    assert not (tmp_path / "OrderCancelled.v2.json").exists()

    monkeypatch.setitem(UPCASTERS, ("OrderCancelled", 1), lambda data: data)
    written = write_schemas(tmp_path)
    assert set(written) == {"OrderCancelled.v2.json", INDEX_FILE}
    assert (tmp_path / "OrderCancelled.v1.json").exists()
    index = json.loads((tmp_path / INDEX_FILE).read_text(encoding="utf-8"))
    entry = next(e for e in index["events"] if e["type"] == "OrderCancelled")
    assert entry["version"] == 2 and entry["schema"] == "OrderCancelled.v2.json"
