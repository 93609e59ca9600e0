"""Alerts for the dispatcher: each is an event, acknowledged by a dispatcher.

An alert's id derives from what it is about (kind, subject, qualifier), so raising the same alert
twice is harmless and a sweep can run as often as it likes.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.dispatch.domain.visits import DispatchError
from services.runtime.eventstore import stable_id


class AlertKind(StrEnum):
    LATE_START = "late_start"
    MISSED = "missed"
    OVERRUN = "overrun"
    LOCATION_NOT_VERIFIED = "location_not_verified"
    NEEDS_REVIEW = "needs_review"
    NOT_FUNDED = "not_funded"
    CERTIFICATE_EXPIRING = "certificate_expiring"
    NO_SHOW = "no_show"
    WELFARE_ESCALATION = "welfare_escalation"
    EMERGENCY = "emergency"  # an emergency order was dispatched: announced to the area
    UNASSIGNED = "unassigned"
    REPLAN_PROPOSED = "replan_proposed"


class Alert(Aggregate):
    @staticmethod
    def create_id(alert_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("alert", alert_id)

    @event("Raised")
    def __init__(self, alert_id: str, kind: AlertKind, service_area_id: str, message: str,
                 raised_at: datetime, severity: str = "warning", visit_id: str | None = None,
                 caregiver_id: str | None = None, elder_id: str | None = None) -> None:
        self.alert_id = alert_id
        self.kind = AlertKind(kind)
        self.service_area_id = service_area_id
        self.message = message
        self.raised_at = raised_at
        self.severity = severity
        self.visit_id = visit_id
        self.caregiver_id = caregiver_id
        self.elder_id = elder_id
        self.acknowledged_by: str | None = None
        self.acknowledged_at: datetime | None = None
        self.resolved: str | None = None

    @property
    def open(self) -> bool:
        return self.acknowledged_by is None and self.resolved is None

    def acknowledge(self, by: str, at: datetime, note: str | None = None) -> None:
        if self.acknowledged_by is not None:
            raise DispatchError(f"alert {self.alert_id} was acknowledged by "
                                f"{self.acknowledged_by} already")
        self._acknowledged(by=by, at=at, note=note)

    @event("Acknowledged")
    def _acknowledged(self, by: str, at: datetime, note: str | None) -> None:
        self.acknowledged_by = by
        self.acknowledged_at = at
        self.note = note

    @event("Resolved")
    def resolve(self, reason: str) -> None:
        """Closed by what happened since (e.g. an offline check-in showed a timely start)."""
        self.resolved = reason
