"""Care plans (regular visits for an entitled elder) and replanning proposals."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.dispatch.domain.visits import DispatchError
from services.runtime.eventstore import stable_id


class CarePlan(Aggregate):
    """"Bathing weekly, cleaning twice a month, meals on weekdays": items that generate the
    visits of each week. Each item: service_type, weekdays (Monday = 0), every_weeks (1 weekly,
    2 fortnightly), window "HH:MM"-"HH:MM" in area local time, optional duration_minutes."""

    @staticmethod
    def create_id(care_plan_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("care-plan", care_plan_id)

    @event("Created")
    def __init__(self, care_plan_id: str, elder_id: str, service_area_id: str,
                 items: list[dict[str, Any]], valid_from: date, created_by: str | None,
                 monthly_minutes: int | None = None) -> None:
        self.care_plan_id = care_plan_id
        # The hours the plan may use a month (what the ledger can reserve for the elder).
        self.monthly_minutes = monthly_minutes
        self.elder_id = elder_id
        self.service_area_id = service_area_id
        # Each version applies from its date on: a change never rewrites the past.
        self.versions: list[dict[str, Any]] = [{"from": valid_from.isoformat(), "items": items}]
        self.ended_on: date | None = None

    @property
    def valid_from(self) -> date:
        return date.fromisoformat(self.versions[0]["from"])

    @property
    def items(self) -> list[dict[str, Any]]:
        return self.versions[-1]["items"]

    def change(self, items: list[dict[str, Any]], effective_from: date, by: str | None) -> None:
        if effective_from < date.fromisoformat(self.versions[-1]["from"]):
            raise DispatchError("a care plan change cannot take effect before the current "
                                "version's start")
        self._changed(items=items, effective_from=effective_from, by=by)

    @event("Changed")
    def _changed(self, items: list[dict[str, Any]], effective_from: date, by: str | None) -> None:
        self.versions = [*self.versions, {"from": effective_from.isoformat(), "items": items}]

    def items_on(self, day: date) -> list[tuple[int, int, dict[str, Any]]]:
        """(version index, item index, item) due on ``day``."""
        if day < self.valid_from or (self.ended_on and day > self.ended_on):
            return []
        index = max(i for i, v in enumerate(self.versions) if date.fromisoformat(v["from"]) <= day)
        version = self.versions[index]
        out = []
        start_monday = self.valid_from - timedelta(days=self.valid_from.weekday())
        week_number = (day - start_monday).days // 7
        for n, item in enumerate(version["items"]):
            if day.weekday() not in item.get("weekdays", []):
                continue
            if week_number % int(item.get("every_weeks", 1)) != 0:
                continue
            out.append((index, n, item))
        return out


class ReplanProposal(Aggregate):
    """The router's answer to a change in the day, shown to a dispatcher before it applies."""

    @staticmethod
    def create_id(proposal_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("replan-proposal", proposal_id)

    @event("Proposed")
    def __init__(self, proposal_id: str, service_area_id: str, day: date, reason: str,
                 moves: list[dict[str, Any]], unassigned: list[dict[str, Any]],
                 proposed_at: datetime) -> None:
        self.proposal_id = proposal_id
        self.service_area_id = service_area_id
        self.day = day
        self.reason = reason
        self.moves = moves
        self.unassigned = unassigned
        self.proposed_at = proposed_at
        self.state = "proposed"
        self.decided_by: str | None = None

    def _require_open(self) -> None:
        if self.state != "proposed":
            raise DispatchError(f"proposal {self.proposal_id} is {self.state} already")

    def accept(self, by: str) -> None:
        self._require_open()
        self._accepted(by=by)

    @event("Accepted")
    def _accepted(self, by: str) -> None:
        self.state = "accepted"
        self.decided_by = by

    def reject(self, by: str, reason: str) -> None:
        self._require_open()
        self._rejected(by=by, reason=reason)

    @event("Rejected")
    def _rejected(self, by: str, reason: str) -> None:
        self.state = "rejected"
        self.decided_by = by
        self.reject_reason = reason
