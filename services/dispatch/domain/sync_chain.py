"""The hash chain that ties a phone's queued check-ins and check-outs together (pure).

A caregiver's phone keeps the check-ins and check-outs it could not send yet in a queue. Each
queued record holds the exact JSON text of its payload, the hash of the record before it (`prev`)
and its own hash = SHA-256(prev + "\\n" + payload) in lower-case hex. The phone computes the
hash with WebCrypto when it queues the record; the server recomputes it when the queue arrives.
Hashing the payload text as stored (not a re-serialisation) keeps both sides byte-identical
without a canonical JSON form that JavaScript and Python would both have to agree on.

What it detects: a record edited on the phone after it was queued (its hash no longer matches),
a record removed from or inserted into the middle of the queue, or records reordered (the next
record's `prev` no longer matches). What it cannot detect on its own: someone who rewrites a
record and recomputes every later hash, or drops the newest records; the chain is a tamper
signal, not a signature.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

# The `prev` of the first record a device ever queues.
GENESIS = "0" * 64

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ChainRecord:
    """One queued record as the phone sends it."""

    prev: str
    payload: str
    hash: str


@dataclass(frozen=True)
class ChainBreak:
    """Where the chain first breaks (0-based index into the batch) and why, in words."""

    index: int
    reason: str


def record_hash(prev: str, payload: str) -> str:
    """SHA-256 over the previous hash, a newline and the payload text, as UTF-8; lower-case hex."""
    return hashlib.sha256(f"{prev}\n{payload}".encode()).hexdigest()


def link(prev: str, payload: str) -> ChainRecord:
    """The record that follows `prev` with this payload (what the phone does when it queues)."""
    return ChainRecord(prev=prev, payload=payload, hash=record_hash(prev, payload))


def first_break(records: Sequence[ChainRecord], anchor: str | None = None) -> ChainBreak | None:
    """The first record that does not hold, or None when the whole batch is one intact chain.

    `anchor` is the hash the first record must follow, when the receiver knows it (e.g. the last
    record it accepted from this device); without it the first `prev` is taken as given.
    """
    expected_prev = anchor
    for index, record in enumerate(records):
        if not _HEX64.fullmatch(record.prev) or not _HEX64.fullmatch(record.hash):
            return ChainBreak(index, "prev and hash must be 64 lower-case hex digits")
        if expected_prev is not None and record.prev != expected_prev:
            what = "the record before it" if index else "the last record accepted"
            return ChainBreak(index, f"prev does not match the hash of {what}")
        if record_hash(record.prev, record.payload) != record.hash:
            return ChainBreak(index, "hash does not match the record's content (edited after "
                                     "it was queued)")
        expected_prev = record.hash
    return None


def head(records: Sequence[ChainRecord], anchor: str = GENESIS) -> str:
    """The hash the next record must follow: the last record's, or the anchor if none."""
    return records[-1].hash if records else anchor
