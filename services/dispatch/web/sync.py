"""Applying a phone's offline queue: verify the hash chain, then each record in order.

The caregiver page queues every departure, check-in and check-out (online too, and sends at once)
so that one path carries them all. A batch is refused whole (409) when its chain is broken:
nothing of a tampered queue is applied. An intact batch is applied record by record through the
application's own depart/check_in/check_out with the device's original time and the record's
idempotency key (the application keeps the keys: a repeat changes nothing); each record is
answered applied, duplicate (sent before: harmless) or rejected with the reason.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from typing import Any, Literal

from eventsourcing.persistence import IntegrityError, RecordConflictError
from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from services.dispatch.domain.sync_chain import ChainBreak, ChainRecord, first_break

MAX_RECORDS = 200  # a day's queue is a few dozen records
CONFLICT_ATTEMPTS = 5


class SyncRecordIn(BaseModel):
    prev: str = Field(description="Hash of the record before this one (64 hex digits)")
    # Room for a signature (QueuedStep.signature) plus the rest of the record.
    payload: str = Field(max_length=210_000, description="The record's JSON text, as queued")
    hash: str = Field(description="SHA-256 hex of prev + newline + payload")


class SyncIn(BaseModel):
    device_id: str = Field(min_length=1, max_length=100)
    caregiver_id: str = Field(min_length=1)
    records: list[SyncRecordIn] = Field(max_length=MAX_RECORDS)


class QueuedStep(BaseModel):
    """What one queued record asks for: a departure, check-in or check-out as the phone
    captured it."""

    kind: Literal["depart", "check_in", "check_out"]
    visit_id: str = Field(min_length=1)
    caregiver_id: str = Field(min_length=1)
    idempotency_key: str = Field(min_length=8, max_length=100)
    at: AwareDatetime
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    accuracy_m: float | None = Field(default=None, ge=0)
    tasks_done: list[str] = []
    confirmation_code: str | None = None
    family_proxy_confirmed: bool = False
    notes: str | None = Field(default=None, max_length=2000)
    signature: str | None = Field(default=None, max_length=200_000)


def chain_break(body: SyncIn) -> ChainBreak | None:
    return first_break([ChainRecord(r.prev, r.payload, r.hash) for r in body.records])


_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def apply_batch(app: Any, body: SyncIn) -> list[dict[str, Any]]:
    """Apply an intact batch in order; one answer per record.

    One caregiver's batches are applied one at a time in this process, so that a copy racing
    the first (a second tab, a retry) reads what the first wrote and is answered "duplicate".
    Across processes the application's idempotency keys and optimistic concurrency still keep
    the visit right; only the answer could then say "applied" twice.
    """
    with _locks_guard:
        lock = _locks[body.caregiver_id]
    with lock:
        return [_apply(app, body.caregiver_id, index, record.payload)
                for index, record in enumerate(body.records)]


def _apply(app: Any, caregiver_id: str, index: int, payload: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"index": index}
    try:
        step = QueuedStep.model_validate(json.loads(payload))
    except (ValueError, ValidationError) as problem:
        return {**answer, "status": "rejected", "reason": f"unreadable record: {problem}"}
    answer.update(idempotency_key=step.idempotency_key, visit_id=step.visit_id, kind=step.kind)
    if step.caregiver_id != caregiver_id:
        return {**answer, "status": "rejected",
                "reason": f"record belongs to {step.caregiver_id}, not {caregiver_id}"}
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return {**answer, **_apply_step(app, step)}
        except (IntegrityError, RecordConflictError):
            # Another request wrote this visit meanwhile (a second tab, a retry racing the
            # first attempt): nothing was written; read again, the key then tells a repeat.
            if attempt == CONFLICT_ATTEMPTS:
                raise
        except (LookupError, ValueError) as refusal:  # unknown visit, illegal step, future ...
            return {**answer, "status": "rejected", "reason": str(refusal).strip("'\"")}
    raise AssertionError("unreachable")


def _apply_step(app: Any, step: QueuedStep) -> dict[str, Any]:
    before = app.get_visit(step.visit_id).version
    if step.kind == "depart":
        visit = app.depart(step.visit_id, at=step.at, caregiver_id=step.caregiver_id,
                           idempotency_key=step.idempotency_key)
    elif step.kind == "check_in":
        visit = app.check_in(
            step.visit_id, at=step.at, lat=step.lat, lon=step.lon,
            caregiver_id=step.caregiver_id, accuracy_m=step.accuracy_m, notes=step.notes,
            idempotency_key=step.idempotency_key)
    else:
        visit = app.check_out(
            step.visit_id, at=step.at, lat=step.lat, lon=step.lon,
            tasks_done=step.tasks_done, confirmation_code=step.confirmation_code or None,
            family_proxy_confirmed=step.family_proxy_confirmed, signature=step.signature,
            caregiver_id=step.caregiver_id, accuracy_m=step.accuracy_m, notes=step.notes,
            idempotency_key=step.idempotency_key)
    # The application answers a repeated idempotency key with the visit unchanged.
    status = "applied" if visit.version > before else "duplicate"
    return {"status": status, "visit": _state(visit)}


def _state(v: Any) -> dict[str, Any]:
    return {"visit_id": v.visit_id, "state": str(v.state), "checked_in_at": v.checked_in_at,
            "checked_out_at": v.checked_out_at, "location_verified": v.location_verified,
            "verification_problems": list(v.verification_problems)}
