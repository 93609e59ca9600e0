"""The service catalogue (服务项目): default duration, skills, staff count and priority per service.

Configuration, not constants: an area may override any entry (issue: catalogue per area through the
API). These defaults follow common practice in the policy documents of DOMAIN.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.values import Priority, ServiceType


@dataclass(frozen=True)
class CatalogueEntry:
    service_type: ServiceType
    default_minutes: int
    skills: frozenset[str] = field(default_factory=frozenset)
    staff_count: int = 1
    priority: Priority = Priority.ENTITLED_CARE
    volunteer_allowed: bool = False  # mutual-aid tasks and welfare checks only


def _entry(service: ServiceType, minutes: int, *skills: str, staff: int = 1,
           priority: Priority = Priority.ENTITLED_CARE, volunteer: bool = False) -> CatalogueEntry:
    return CatalogueEntry(service, minutes, frozenset(skills), staff, priority, volunteer)


DEFAULT_CATALOGUE: dict[ServiceType, CatalogueEntry] = {
    e.service_type: e
    for e in (
        _entry(ServiceType.MEAL_HELP, 30, "meal"),
        _entry(ServiceType.MEAL_DELIVERY, 10, "meal", volunteer=True),
        _entry(ServiceType.CLEANING, 60, "cleaning"),
        _entry(ServiceType.BATHING, 60, "bathing"),
        _entry(ServiceType.MOBILITY, 30, "mobility"),
        _entry(ServiceType.SHOPPING, 45, volunteer=True),
        _entry(ServiceType.HOUSEWORK, 60, "cleaning"),
        _entry(ServiceType.BED_MAKING, 20, "cleaning"),
        _entry(ServiceType.DRESSING, 20, "personal_care"),
        _entry(ServiceType.REHABILITATION_NURSING, 60, "nursing"),
        _entry(ServiceType.MEDICATION_REMINDER, 15, volunteer=True),
        _entry(ServiceType.MEDICAL_ESCORT, 180, "escort", priority=Priority.MEDICAL_ESCORT),
        _entry(ServiceType.COMPANIONSHIP, 60, volunteer=True),
        _entry(ServiceType.EQUIPMENT_RENTAL_DELIVERY, 30, "equipment"),
        _entry(ServiceType.WELFARE_CHECK, 20, volunteer=True),
        _entry(ServiceType.EMERGENCY, 60, priority=Priority.EMERGENCY),
    )
}


def catalogue_entry(service_type: ServiceType,
                    overrides: dict[ServiceType, CatalogueEntry] | None = None) -> CatalogueEntry:
    if overrides and service_type in overrides:
        return overrides[service_type]
    return DEFAULT_CATALOGUE[service_type]
