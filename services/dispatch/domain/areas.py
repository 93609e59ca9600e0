"""A service area's configuration: verification and alert rules, and its service catalogue.

Stored as events of one ServiceArea aggregate per area, so every change is on record and the
rules a visit was judged by can be reconstructed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from contracts.values import ServiceType
from services.dispatch.domain.catalogue import DEFAULT_CATALOGUE, CatalogueEntry
from services.runtime.eventstore import stable_id


@dataclass(frozen=True)
class AreaRules:
    """What an area decides for itself (defaults are the common practice)."""

    geofence_radius_m: int = 200
    # A position less accurate than this cannot prove presence at the home.
    max_accuracy_m: int = 100
    # Actual minutes outside [min, max] percent of the planned minutes need review.
    min_duration_percent: int = 50
    max_duration_percent: int = 150
    confirmation_required: bool = True
    # Late-start alerts: one per grace period passed without a check-in.
    late_grace_minutes: tuple[int, ...] = (15, 30, 60)
    # A visit with no check-in this long after its planned end is missed.
    missed_after_minutes: int = 60
    overrun_grace_minutes: int = 15
    # Device clocks drift: times up to this far in the future are accepted.
    clock_skew_seconds: int = 120
    auto_accept_replans: bool = False
    certificate_warning_days: int = 30
    # A welfare check's escalation step with no answer recorded this long goes to the next.
    escalation_minutes: int = 15
    # A phone that reported queued records is trusted this long before alerts fire anyway.
    pending_sync_trust_minutes: int = 240

    def changed(self, **changes: Any) -> AreaRules:
        if "late_grace_minutes" in changes:
            changes["late_grace_minutes"] = tuple(sorted(changes["late_grace_minutes"]))
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["late_grace_minutes"] = list(self.late_grace_minutes)
        return data

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


class ServiceArea(Aggregate):
    @staticmethod
    def create_id(service_area_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("service-area", service_area_id)

    @event("Created")
    def __init__(self, service_area_id: str) -> None:
        self.service_area_id = service_area_id
        self.rule_changes: dict[str, Any] = {}
        self.catalogue_changes: dict[str, dict[str, Any]] = {}

    @event("RulesChanged")
    def change_rules(self, changes: dict[str, Any], changed_by: str | None = None) -> None:
        self.rule_changes = {**self.rule_changes, **changes}

    @event("CatalogueEntryChanged")
    def change_catalogue_entry(self, service_type: str, changes: dict[str, Any],
                               changed_by: str | None = None) -> None:
        merged = {**self.catalogue_changes.get(service_type, {}), **changes}
        self.catalogue_changes = {**self.catalogue_changes, service_type: merged}

    @property
    def rules(self) -> AreaRules:
        return AreaRules().changed(**self.rule_changes)

    def catalogue(self) -> dict[ServiceType, CatalogueEntry]:
        out = dict(DEFAULT_CATALOGUE)
        for service, changes in self.catalogue_changes.items():
            st = ServiceType(service)
            out[st] = out[st].changed(**changes)
        return out
