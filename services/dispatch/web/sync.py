"""Applying a phone's offline queue: verify the hash chain, then each record in order.

The caregiver page queues every check-in and check-out (online too, and sends at once) so that one
path carries them all. A batch is refused whole (409) when its chain is broken: nothing of a
tampered queue is applied. An intact batch is applied record by record through the application's
own check_in/check_out with the device's original time and the record's idempotency key; each
record is answered applied, duplicate (sent before: harmless) or rejected with the reason.
"""

from __future__ import annotations

import inspect
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, ValidationError

from services.dispatch.domain.sync_chain import ChainBreak, ChainRecord, first_break

MAX_RECORDS = 500


class SyncRecordIn(BaseModel):
    prev: str = Field(description="Hash of the record before this one (64 hex digits)")
    payload: str = Field(max_length=20_000, description="The record's JSON text, as queued")
    hash: str = Field(description="SHA-256 hex of prev + newline + payload")


class SyncIn(BaseModel):
    device_id: str = Field(min_length=1, max_length=100)
    caregiver_id: str = Field(min_length=1)
    records: list[SyncRecordIn] = Field(max_length=MAX_RECORDS)


class QueuedStep(BaseModel):
    """What one queued record asks for: a check-in or check-out as the phone captured it."""

    kind: Literal["check_in", "check_out"]
    visit_id: str = Field(min_length=1)
    caregiver_id: str = Field(min_length=1)
    idempotency_key: str = Field(min_length=8, max_length=100)
    at: AwareDatetime
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    accuracy_m: float | None = Field(default=None, ge=0)
    tasks_done: list[str] = []
    confirmation_code: str | None = None
    notes: str | None = Field(default=None, max_length=2000)
    signature: str | None = Field(default=None, max_length=200_000)


def chain_break(body: SyncIn) -> ChainBreak | None:
    return first_break([ChainRecord(r.prev, r.payload, r.hash) for r in body.records])


def apply_batch(app: Any, body: SyncIn) -> list[dict[str, Any]]:
    """Apply an intact batch in order; one answer per record."""
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
    try:
        if _sent_before(app.get_visit(step.visit_id), step):
            return {**answer, "status": "duplicate", "visit": _state(app, step.visit_id)}
        if step.kind == "check_in":
            _call(app.check_in, step.visit_id, at=step.at, lat=step.lat, lon=step.lon,
                  caregiver_id=step.caregiver_id, idempotency_key=step.idempotency_key,
                  accuracy_m=step.accuracy_m, notes=step.notes)
        else:
            _call(app.check_out, step.visit_id, at=step.at, lat=step.lat, lon=step.lon,
                  tasks_done=step.tasks_done, confirmation_code=step.confirmation_code or None,
                  caregiver_id=step.caregiver_id, idempotency_key=step.idempotency_key,
                  accuracy_m=step.accuracy_m, notes=step.notes, signature=step.signature)
    except (LookupError, ValueError) as refusal:  # unknown visit, illegal step, bad time ...
        return {**answer, "status": "rejected", "reason": str(refusal).strip("'\"")}
    return {**answer, "status": "applied", "visit": _state(app, step.visit_id)}


def _sent_before(visit: Any, step: QueuedStep) -> bool:
    """The same step at the same device time is already on the visit: a repeat, not a new fact.

    Holds whether or not the application keeps idempotency keys itself; when it does, it also
    answers a repeat with the visit unchanged.
    """
    recorded: datetime | None = (visit.checked_in_at if step.kind == "check_in"
                                 else visit.checked_out_at)
    return recorded is not None and recorded == step.at


def _call(command: Any, visit_id: str, **params: Any) -> None:
    """Pass the optional EVV details only to a command that takes them (the backend adds
    idempotency_key, accuracy_m, notes and signature step by step)."""
    accepted = inspect.signature(command).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    command(visit_id, **{k: v for k, v in params.items() if takes_all or k in accepted})


def _state(app: Any, visit_id: str) -> dict[str, Any]:
    v = app.get_visit(visit_id)
    return {"visit_id": v.visit_id, "state": str(v.state), "checked_in_at": v.checked_in_at,
            "checked_out_at": v.checked_out_at, "location_verified": v.location_verified,
            "verification_problems": list(v.verification_problems)}
