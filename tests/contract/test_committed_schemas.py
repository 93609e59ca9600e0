"""The committed JSON Schemas (contracts/schemas/) are the published contract: they must equal what
the models generate, and the models must stay backward compatible with them."""

from __future__ import annotations

import difflib
import json

from contracts.export import (
    EXPORT_COMMAND,
    INDEX_FILE,
    SCHEMA_DIR,
    compatibility_problems,
    index_document,
    load_schemas,
    parse_file_name,
    render,
    schema_documents,
)
from contracts.registry import EVENT_TYPES

MAX_DIFF_LINES = 80


def test_committed_schemas_equal_the_models() -> None:
    """Every generated schema and index.json is committed byte for byte; otherwise the failure
    shows the diff and says how to regenerate."""
    expected = {name: render(doc) for name, doc in schema_documents().items()}
    expected[INDEX_FILE] = render(index_document())
    diffs: list[str] = []
    for name, text in expected.items():
        path = SCHEMA_DIR / name
        if not path.exists():
            diffs.append(f"--- missing contracts/schemas/{name}")
            continue
        committed = path.read_text(encoding="utf-8")
        if committed != text:
            diffs.extend(
                difflib.unified_diff(
                    committed.splitlines(),
                    text.splitlines(),
                    f"committed contracts/schemas/{name}",
                    f"generated from the models {name}",
                    lineterm="",
                )
            )
    if diffs:
        shown = "\n".join(diffs[:MAX_DIFF_LINES])
        hidden = len(diffs) - MAX_DIFF_LINES
        more = f"\n... {hidden} more lines" if hidden > 0 else ""
        raise AssertionError(
            "The committed JSON Schemas differ from the models in contracts/. If the change is "
            f"intended (and backward compatible), run `{EXPORT_COMMAND}` (make contracts) and "
            f"commit contracts/schemas/.\n{shown}{more}"
        )


def test_models_are_backward_compatible_with_committed_schemas() -> None:
    """Against the last committed version: no removed field, no new required field, no changed
    type; a breaking change must be a new schema_version with an upcaster."""
    problems = compatibility_problems(load_schemas(SCHEMA_DIR), schema_documents())
    assert not problems, "Backward-incompatible contract change:\n  - " + "\n  - ".join(problems)


def test_committed_directory_holds_only_schema_files_and_the_index() -> None:
    """Nothing stray in contracts/schemas/: each file is <Type>.v<N>.json or index.json."""
    for path in SCHEMA_DIR.iterdir():
        assert path.name == INDEX_FILE or parse_file_name(path.name), path.name


def test_index_lists_type_version_topic_and_key() -> None:
    """index.json tells AsyncAPI and humans where each event travels and how it is keyed."""
    index = json.loads((SCHEMA_DIR / INDEX_FILE).read_text(encoding="utf-8"))
    entries = {entry["type"]: entry for entry in index["events"]}
    assert set(entries) == set(EVENT_TYPES)
    for name, cls in EVENT_TYPES.items():
        assert entries[name] == {
            "type": name,
            "version": cls.current_version(),
            "topic": cls.topic,
            "key": "service_area_id",
            "schema": f"{name}.v{cls.current_version()}.json",
        }
        assert (SCHEMA_DIR / entries[name]["schema"]).exists()


def test_schema_documents_carry_envelope_and_routing() -> None:
    """Each schema is a 2020-12 document with the envelope fields and its topic and key."""
    for name, doc in schema_documents().items():
        event_type, version = parse_file_name(name) or ("", 0)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["$id"] == f"urn:homecare:contracts:{event_type}:v{version}"
        assert doc["x-topic"] == EVENT_TYPES[event_type].topic
        assert doc["x-partition-key"] == "service_area_id"
        assert doc["properties"]["type"]["const"] == event_type
        assert doc["properties"]["schema_version"]["const"] == version
        assert {"service_area_id", "payload"} <= set(doc["required"])
