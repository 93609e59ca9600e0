"""Elders, caregivers, volunteers and provider organisations as dispatch knows them."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from contracts.values import CaregiverKind
from services.runtime.eventstore import stable_id

# 老年人能力评估: 0 能力完好 (intact) .. 4 完全失能 (fully dependent).
CAPABILITY_LEVELS = range(0, 5)
# From this capability level on, personal care needs a caregiver of certificate level 2+.
SEVERE_DEPENDENCY_LEVEL = 3


class Elder(Aggregate):
    """An elder living at home who receives visits; the id is derived from the elder's number."""

    @staticmethod
    def create_id(elder_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("elder", elder_id)

    @event("Registered")
    def __init__(
        self,
        elder_id: str,
        name: str,
        service_area_id: str,
        lat: float,
        lon: float,
        confirmation_code: str,
        address: str = "",
        phone: str = "",
        gender: str | None = None,
        capability_level: int = 0,
        gender_preference: str | None = None,
        preferred_caregiver_ids: list[str] | None = None,
        excluded_caregiver_ids: list[str] | None = None,
        family_phone: str = "",
        id_number: str = "",
    ) -> None:
        self.elder_id = elder_id
        self.name = name
        self.service_area_id = service_area_id
        self.lat = lat
        self.lon = lon
        # The code the elder (or family proxy) tells the caregiver to confirm a visit took place.
        self.confirmation_code = confirmation_code
        self.address = address
        self.phone = phone
        self.gender = gender
        self.capability_level = capability_level
        self.gender_preference = gender_preference
        self.preferred_caregiver_ids = list(preferred_caregiver_ids or [])
        self.excluded_caregiver_ids = list(excluded_caregiver_ids or [])
        self.family_phone = family_phone
        self.id_number = id_number  # 居民身份证号 (resident identity card number)
        self.erased_at: datetime | None = None
        self.erased_by: str | None = None

    @property
    def erased(self) -> bool:
        return self.erased_at is not None

    @event("Erased")
    def erase(self, by: str, at: datetime) -> None:
        """Personal data erased on request (PIPL): who and when, nothing about the person.

        The stored personal fields become unreadable (their key is deleted); the aggregate says
        so at once, without waiting for that."""
        self.erased_at, self.erased_by = at, by
        self.name = self.address = self.phone = self.family_phone = self.id_number = "[erased]"

    @event("PreferencesChanged")
    def change_preferences(self, gender_preference: str | None,
                           preferred_caregiver_ids: list[str],
                           excluded_caregiver_ids: list[str]) -> None:
        self.gender_preference = gender_preference
        self.preferred_caregiver_ids = list(preferred_caregiver_ids)
        self.excluded_caregiver_ids = list(excluded_caregiver_ids)

    @event("Assessed")
    def assess(self, capability_level: int, assessed_on: date) -> None:
        self.capability_level = capability_level
        self.assessed_on = assessed_on


def parse_hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


class Caregiver(Aggregate):
    """A caregiver (护理员) of a provider organisation, or a volunteer (志愿者)."""

    @staticmethod
    def create_id(caregiver_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("caregiver", caregiver_id)

    @event("Registered")
    def __init__(
        self,
        caregiver_id: str,
        name: str,
        kind: CaregiverKind,
        service_area_id: str,
        skills: list[str],
        station_lat: float,
        station_lon: float,
        provider_id: str | None = None,
        certificate_expires: date | None = None,
        gender: str | None = None,
        certificate_level: int = 1,
        shift_start: str = "08:00",
        shift_end: str = "17:00",
        work_days: list[int] | None = None,
        travel_mode: str = "ebike",
        max_visits_per_day: int | None = None,
        max_minutes_per_week: int | None = None,
        phone: str = "",
    ) -> None:
        self.caregiver_id = caregiver_id
        self.name = name
        self.kind = CaregiverKind(kind)
        self.service_area_id = service_area_id
        self.skills = sorted(set(skills))
        self.station_lat = station_lat
        self.station_lon = station_lon
        self.provider_id = provider_id
        self.certificate_expires = certificate_expires
        self.gender = gender
        self.certificate_level = certificate_level
        self.shift_start = shift_start
        self.shift_end = shift_end
        # Monday = 0; available every day unless a roster says otherwise.
        self.work_days = list(work_days if work_days is not None else range(7))
        self.travel_mode = travel_mode
        # Volunteers give a little time: a few visits a day, a few hours a week by default.
        volunteer = self.kind is CaregiverKind.VOLUNTEER
        self.max_visits_per_day = max_visits_per_day or (3 if volunteer else None)
        self.max_minutes_per_week = max_minutes_per_week or (600 if volunteer else None)
        self.phone = phone
        self.days_off: dict[str, str] = {}  # ISO date -> reason
        # What the phone last said it holds queued (weak signal): visit ids, when.
        self.pending_sync: dict[str, Any] = {}
        self.unavailable_from: dict[str, str] = {}  # ISO date -> ISO instant (fell ill)

    @event("CertificateRenewed")
    def renew_certificate(self, expires: date, level: int) -> None:
        self.certificate_expires = expires
        self.certificate_level = level

    @event("ShiftChanged")
    def change_shift(self, shift_start: str, shift_end: str, work_days: list[int]) -> None:
        self.shift_start, self.shift_end, self.work_days = shift_start, shift_end, list(work_days)

    @event("DayOff")
    def take_day_off(self, day: date, reason: str) -> None:
        self.days_off = {**self.days_off, day.isoformat(): reason}

    @event("ReportedSick")
    def report_sick(self, day: date, from_at: str, reason: str) -> None:
        self.unavailable_from = {**self.unavailable_from, day.isoformat(): from_at}
        self.sick_reason = reason

    @event("SyncPendingReported")
    def report_pending_sync(self, visit_ids: list[str], reported_at: datetime) -> None:
        self.pending_sync = {"visit_ids": list(visit_ids), "reported_at": reported_at.isoformat()}

    def is_certified_on(self, day: date) -> bool:
        """Employees must hold a valid certificate (持证上岗); volunteers do mutual-aid only."""
        if self.kind is CaregiverKind.VOLUNTEER:
            return True
        return self.certificate_expires is not None and self.certificate_expires >= day

    def works_on(self, day: date) -> bool:
        return day.weekday() in self.work_days and day.isoformat() not in self.days_off

    def shift_on(self, day: date) -> tuple[time, time]:
        return parse_hhmm(self.shift_start), parse_hhmm(self.shift_end)


class Provider(Aggregate):
    """A provider organisation (服务机构); a blacklisted one gets no subsidised visits."""

    @staticmethod
    def create_id(provider_id: str, **_: object) -> UUID:  # type: ignore[override]
        return stable_id("provider", provider_id)

    @event("Registered")
    def __init__(self, provider_id: str, name: str, service_area_id: str) -> None:
        self.provider_id = provider_id
        self.name = name
        self.service_area_id = service_area_id
        self.blacklisted = False
        self.blacklist_reason: str | None = None

    @event("Blacklisted")
    def blacklist(self, reason: str, by: str) -> None:
        self.blacklisted = True
        self.blacklist_reason = reason

    @event("Reinstated")
    def reinstate(self, by: str, reason: str) -> None:
        self.blacklisted = False
        self.blacklist_reason = None


def view_of(aggregate: Any, *names: str) -> dict[str, Any]:
    return {n: getattr(aggregate, n, None) for n in names}
