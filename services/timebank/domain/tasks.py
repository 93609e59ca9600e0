"""Volunteer tasks as the time bank sees them: visits dispatch assigned to a volunteer.

The time bank keeps its own copy (from VisitScheduled / VisitRescheduled / VisitVerified /
VisitCancelled) so the volunteer page can list "my tasks" without asking dispatch.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.runtime.eventstore import stable_id


class VolunteerTask(Aggregate):
    @staticmethod
    def create_id(visit_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("timebank-task", visit_id)

    @event("Assigned")
    def __init__(self, visit_id: str, volunteer_id: str, elder_id: str, service_type: str,
                 planned_start: datetime, planned_end: datetime, planned_minutes: int,
                 service_area_id: str, paid_with_credits: bool) -> None:
        self.visit_id = visit_id
        self.volunteer_id = volunteer_id
        self.elder_id = elder_id
        self.service_type = service_type
        self.planned_start = planned_start
        self.planned_end = planned_end
        self.planned_minutes = planned_minutes
        self.service_area_id = service_area_id
        self.paid_with_credits = paid_with_credits
        self.state = "assigned"

    @event("Moved")
    def move(self, volunteer_id: str, planned_start: datetime, planned_end: datetime,
             planned_minutes: int) -> None:
        self.volunteer_id = volunteer_id
        self.planned_start = planned_start
        self.planned_end = planned_end
        self.planned_minutes = planned_minutes

    @event("Closed")
    def close(self, state: str) -> None:
        self.state = state  # done | cancelled
