"""JSON Schema export of the integration events and the backward-compatibility check.

Committed schemas (contracts/schemas/) are the published contract. `write_schemas` regenerates them
from the models but refuses to overwrite a committed schema with an incompatible one: the only
changes allowed within a version are new optional fields (and new enum values); anything else is a
new schema_version file plus an upcaster from the previous version (contracts.registry.UPCASTERS).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from contracts.envelope import IntegrationEvent
from contracts.registry import EVENT_TYPES, UPCASTERS

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
INDEX_FILE = "index.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
EXPORT_COMMAND = "homecare contracts export"

_FILE_NAME = re.compile(r"^(?P<type>[A-Za-z][A-Za-z0-9_]*)\.v(?P<version>\d+)\.json$")

Schema = dict[str, Any]


class IncompatibleSchemaError(ValueError):
    """The models break the committed contract; `problems` lists each break."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        listing = "\n  - ".join(problems)
        super().__init__(
            "refusing to overwrite committed schemas with incompatible ones; a breaking change "
            f"needs a new schema_version and an upcaster:\n  - {listing}"
        )


def schema_file_name(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}.json"


def parse_file_name(name: str) -> tuple[str, int] | None:
    """(type, version) of a schema file name such as 'VisitVerified.v1.json'."""
    match = _FILE_NAME.match(name)
    return (match["type"], int(match["version"])) if match else None


def schema_document(cls: type[IntegrationEvent]) -> Schema:
    """The JSON Schema of one event class (what a consumer of that version accepts)."""
    version = cls.current_version()
    body = cls.model_json_schema(mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:homecare:contracts:{cls.__name__}:v{version}",
        **body,
        "x-topic": cls.topic,
        "x-partition-key": cls.partition_key_field,
        "x-schema-version": version,
    }


def schema_documents() -> dict[str, Schema]:
    """File name -> JSON Schema for every event type at its current version."""
    return {
        schema_file_name(name, cls.current_version()): schema_document(cls)
        for name, cls in sorted(EVENT_TYPES.items())
    }


def index_document() -> dict[str, Any]:
    """What index.json holds: for each event type its version, topic, key field and file."""
    return {
        "events": [
            {
                "type": name,
                "version": cls.current_version(),
                "topic": cls.topic,
                "key": cls.partition_key_field,
                "schema": schema_file_name(name, cls.current_version()),
            }
            for name, cls in sorted(EVENT_TYPES.items())
        ]
    }


def render(document: dict[str, Any]) -> str:
    """The exact text a schema file holds (stable, so git diffs stay readable)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_schemas(directory: Path | str = SCHEMA_DIR) -> dict[str, Schema]:
    """The committed schema files in `directory` (index.json excluded)."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.json"))
        if parse_file_name(path.name) is not None
    }


def compatibility_problems(committed: dict[str, Schema], generated: dict[str, Schema]) -> list[str]:
    """Every way `generated` breaks `committed`, as file-prefixed human-readable lines."""
    problems: list[str] = []
    committed_versions: dict[str, list[int]] = {}
    for name in committed:
        parsed = parse_file_name(name)
        if parsed:
            committed_versions.setdefault(parsed[0], []).append(parsed[1])
    generated_versions = {
        parsed[0]: parsed[1] for parsed in map(parse_file_name, generated) if parsed is not None
    }

    for name, new in generated.items():
        if name in committed:
            problems.extend(f"{name}: {problem}" for problem in compare(committed[name], new))
            continue
        parsed = parse_file_name(name)
        if parsed is None:
            continue
        event_type, version = parsed
        older = [v for v in committed_versions.get(event_type, []) if v < version]
        if older:
            # A new version must be reachable from every committed older one.
            missing = [v for v in range(min(older), version) if (event_type, v) not in UPCASTERS]
            problems.extend(
                f"{name}: new version, but no upcaster from {event_type} v{v} "
                f"(register UPCASTERS[({event_type!r}, {v})])"
                for v in missing
            )

    for event_type, versions in sorted(committed_versions.items()):
        current = generated_versions.get(event_type)
        if current is None:
            problems.append(f"{event_type}: event type removed (committed v{max(versions)})")
        elif current < max(versions):
            problems.append(
                f"{event_type}: models are at v{current} but v{max(versions)} is committed"
            )
    return problems


def write_schemas(directory: Path | str = SCHEMA_DIR) -> list[str]:
    """Write the current schemas and index.json into `directory`; return the files changed.

    Raises IncompatibleSchemaError (and writes nothing) when a committed schema would be replaced
    by an incompatible one. Files of older versions stay: they are the history upcasters start from.
    """
    directory = Path(directory)
    generated = schema_documents()
    problems = compatibility_problems(load_schemas(directory), generated)
    if problems:
        raise IncompatibleSchemaError(problems)
    directory.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    files = {name: render(doc) for name, doc in generated.items()}
    files[INDEX_FILE] = render(index_document())
    for name, text in files.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    return changed


# --- compatibility of two JSON Schemas -----------------------------------------------------------

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum")
_CONSTRAINTS = (
    *_LOWER_BOUNDS,
    *_UPPER_BOUNDS,
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "multipleOf",
)


def compare(old: Schema, new: Schema) -> list[str]:
    """Backward-incompatible changes from `old` to `new` (empty when compatible).

    Reported: removed field; field that became required (including a new required field); field
    no longer required; changed type, format, constant or constraint (in nested models and $defs
    too); enum that lost values. Allowed: new optional fields, new enum values, changed titles,
    descriptions and defaults.
    """
    return _Comparison(old, new).run()


class _Comparison:
    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.problems: list[str] = []
        self._active: set[tuple[str, str]] = set()  # $ref pairs being compared: stops recursion

    def run(self) -> list[str]:
        self._schemas(self.old_root, self.new_root, "")
        return self.problems

    # resolution

    @staticmethod
    def _resolve(schema: Schema, root: Schema) -> Schema:
        seen: set[str] = set()
        while True:
            if "$ref" in schema:
                ref = schema["$ref"]
                if ref in seen or not ref.startswith("#/"):
                    return schema
                seen.add(ref)
                target: Any = root
                for part in ref[2:].split("/"):
                    target = target.get(part, {}) if isinstance(target, dict) else {}
                siblings = {k: v for k, v in schema.items() if k != "$ref"}
                schema = {**target, **siblings}
            elif "allOf" in schema and len(schema["allOf"]) == 1:
                siblings = {k: v for k, v in schema.items() if k != "allOf"}
                schema = {**schema["allOf"][0], **siblings}
            else:
                return schema

    def _variants(self, schema: Schema, root: Schema) -> list[Schema]:
        schema = self._resolve(schema, root)
        for combinator in ("anyOf", "oneOf"):
            if combinator in schema:
                out: list[Schema] = []
                for option in schema[combinator]:
                    out.extend(self._variants(option, root))
                return out
        return [schema]

    # description of a variant for messages and for pairing old with new

    @staticmethod
    def _types(schema: Schema) -> tuple[str, ...]:
        declared = schema.get("type")
        if isinstance(declared, list):
            return tuple(sorted(declared))
        if isinstance(declared, str):
            return (declared,)
        if "properties" in schema:
            return ("object",)
        if "items" in schema:
            return ("array",)
        return ()

    def _key(self, schema: Schema) -> tuple[tuple[str, ...], str | None]:
        return self._types(schema), schema.get("format")

    def _describe(self, schema: Schema) -> str:
        types = "|".join(self._types(schema)) or "any"
        if schema.get("format"):
            types += f"({schema['format']})"
        if "const" in schema:
            types += f" const {schema['const']!r}"
        elif "enum" in schema:
            types += f" enum {schema['enum']!r}"
        return types

    # comparison

    def _schemas(self, old: Schema, new: Schema, path: str) -> None:
        ref_pair = (old.get("$ref", ""), new.get("$ref", ""))
        if ref_pair != ("", ""):
            if ref_pair in self._active:
                return
            self._active.add(ref_pair)
        try:
            self._compare_variants(
                self._variants(old, self.old_root), self._variants(new, self.new_root), path
            )
        finally:
            self._active.discard(ref_pair)

    def _compare_variants(self, olds: list[Schema], news: list[Schema], path: str) -> None:
        where = path or "(message)"
        new_by_key: dict[Any, Schema] = {}
        for variant in news:
            new_by_key.setdefault(self._key(variant), variant)
        old_keys = {self._key(v) for v in olds}
        if len(olds) == 1 and len(news) == 1 and old_keys != set(new_by_key):
            self.problems.append(
                f"changed type of {where}: was {self._describe(olds[0])}, "
                f"now {self._describe(news[0])}"
            )
            return
        for variant in olds:
            match = new_by_key.get(self._key(variant))
            if match is None:
                self.problems.append(
                    f"changed type of {where}: no longer accepts {self._describe(variant)}"
                )
            else:
                self._variant(variant, match, path)
        for key, variant in new_by_key.items():
            if key not in old_keys:
                self.problems.append(
                    f"changed type of {where}: now also accepts {self._describe(variant)}"
                )

    def _variant(self, old: Schema, new: Schema, path: str) -> None:
        where = path or "(message)"
        if "const" in old or "const" in new:
            if old.get("const", old.get("enum")) != new.get("const", new.get("enum")):
                self.problems.append(
                    f"changed type of {where}: was {self._describe(old)}, now {self._describe(new)}"
                )
        elif "enum" in old or "enum" in new:
            if "enum" not in old or "enum" not in new:
                self.problems.append(
                    f"changed type of {where}: was {self._describe(old)}, now {self._describe(new)}"
                )
            else:
                new_values = [json.dumps(v, sort_keys=True) for v in new["enum"]]
                lost = [v for v in old["enum"] if json.dumps(v, sort_keys=True) not in new_values]
                if lost:
                    self.problems.append(f"enum {where} lost values {lost!r}")
        for keyword in _CONSTRAINTS:
            if old.get(keyword) != new.get(keyword):
                before = old.get(keyword, "none")
                after = new.get(keyword, "none")
                self.problems.append(
                    f"changed constraint {keyword} of {where}: {before} -> {after}"
                )
        types = self._types(old)
        if "object" in types:
            self._object(old, new, path)
        if "array" in types:
            self._schemas(old.get("items", {}), new.get("items", {}), f"{path}[]")
        if "prefixItems" in old or "prefixItems" in new:
            old_items, new_items = old.get("prefixItems", []), new.get("prefixItems", [])
            if len(old_items) != len(new_items):
                self.problems.append(f"changed type of {where}: tuple length changed")
            for i, (o, n) in enumerate(zip(old_items, new_items, strict=False)):
                self._schemas(o, n, f"{path}[{i}]")

    def _object(self, old: Schema, new: Schema, path: str) -> None:
        prefix = f"{path}." if path else ""
        old_props: Schema = old.get("properties", {})
        new_props: Schema = new.get("properties", {})
        old_required = set(old.get("required", []))
        new_required = set(new.get("required", []))
        for name in old_props:
            if name not in new_props:
                self.problems.append(f"removed field {prefix}{name}")
        for name in sorted(new_required - old_required):
            if name in old_props:
                self.problems.append(f"field became required: {prefix}{name}")
            else:
                self.problems.append(f"new required field {prefix}{name}")
        for name in sorted((old_required - new_required) & set(new_props)):
            # Older consumers still require it: producers may not start leaving it out.
            self.problems.append(f"field no longer required: {prefix}{name}")
        for name, old_field in old_props.items():
            if name in new_props:
                self._schemas(old_field, new_props[name], f"{prefix}{name}")
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_extra, dict) and isinstance(new_extra, dict):
            self._schemas(old_extra, new_extra, f"{prefix}*")
        elif isinstance(old_extra, dict) != isinstance(new_extra, dict):
            self.problems.append(f"changed type of {path or '(message)'}: map values changed")
