"""The hash chain of a phone's offline queue: what passes, and where an edit is caught."""

from __future__ import annotations

import json
from dataclasses import replace

from services.dispatch.domain.sync_chain import (
    GENESIS,
    ChainRecord,
    first_break,
    head,
    link,
    record_hash,
)


def chain(payloads: list[str], prev: str = GENESIS) -> list[ChainRecord]:
    records = []
    for payload in payloads:
        records.append(link(prev, payload))
        prev = records[-1].hash
    return records


def payloads(n: int) -> list[str]:
    return [json.dumps({"kind": "check_in", "visit_id": f"V-{i}", "at": f"2026-11-23T0{i}:00Z"})
            for i in range(n)]


def test_hash_is_sha256_of_prev_newline_payload_in_utf8() -> None:
    """The rule the phone's WebCrypto code follows; this vector was computed with sha256sum."""
    payload = '{"kind":"check_in","visit_id":"V-1","at":"2026-11-23T09:00:00+08:00","note":"王"}'
    assert record_hash(GENESIS, payload) == (
        "d86c6f6e1f9d2c36059284e9d4e7137383c2adde91e7bd08bca8be224c1c6c95")


def test_intact_chain_has_no_break_and_its_head_is_the_last_hash() -> None:
    """A queue built record by record verifies, from genesis or from a known anchor."""
    records = chain(payloads(4))
    assert first_break(records) is None
    assert first_break(records, anchor=GENESIS) is None
    assert head(records) == records[-1].hash
    assert head([]) == GENESIS


def test_edited_payload_is_caught_at_its_index() -> None:
    """Changing a queued record's content (e.g. its time) breaks the chain exactly there."""
    records = chain(payloads(4))
    edited = records[2].payload.replace("02:00", "01:30")
    records[2] = replace(records[2], payload=edited)
    found = first_break(records)
    assert found is not None and found.index == 2
    assert "hash" in found.reason


def test_rehashed_edit_is_caught_at_the_next_record() -> None:
    """Recomputing the edited record's own hash still leaves the next record's prev behind."""
    records = chain(payloads(4))
    records[1] = link(records[1].prev, records[1].payload.replace("V-1", "V-9"))
    found = first_break(records)
    assert found is not None and found.index == 2
    assert "prev" in found.reason


def test_removed_and_reordered_records_are_caught() -> None:
    """Dropping a record from the middle or swapping two breaks the links."""
    records = chain(payloads(4))
    dropped = first_break([records[0], records[2], records[3]])
    swapped = first_break([records[0], records[2], records[1], records[3]])
    assert dropped is not None and dropped.index == 1
    assert swapped is not None and swapped.index == 1


def test_anchor_checks_the_first_link() -> None:
    """A batch continuing a chain must follow the anchor the receiver knows."""
    first, rest = chain(payloads(3))[:1], chain(payloads(3))[1:]
    assert first_break(rest, anchor=first[0].hash) is None
    found = first_break(rest, anchor=GENESIS)
    assert found is not None and found.index == 0


def test_malformed_hashes_are_refused() -> None:
    """Upper-case or short hex is not a hash this rule produces."""
    records = chain(payloads(2))
    upper = replace(records[0], hash=records[0].hash.upper())
    found = first_break([upper, records[1]])
    assert found is not None and found.index == 0 and "hex" in found.reason
    found = first_break([replace(records[0], prev="00")])
    assert found is not None and found.index == 0
